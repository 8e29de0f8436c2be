"""The built-in effects: one function each, over an explicit ``EffectContext``.

A new built-in effect is one function here plus one entry in ``BUILTIN_EFFECTS``. Each
function gets the run, the effect, the node's default next node, the step's idempotency
key and the clock, and returns an ``EffectOutcome``. Nothing here touches a store: what
needs the runtime (starting a child) is a callable on the context.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Optional

from .dc import Plain
from .models import Effect, EffectType, RunState, RunStatus, WaitReason, WaitState
from .outcome import EffectOutcome
from .sha import sha256
from .timeutil import parse_timestamp


@dataclass(init=False, repr=False, eq=False)
class EffectContext(Plain):
    """Everything a built-in effect may use."""

    run: RunState
    effect: Effect
    next_node: Optional[str]
    idempotency_key: str
    clock: Callable[[], datetime]
    # (child_id, workflow_id, vars, tick) -> the child's state after creating it (if it
    # does not exist yet) and, when ``tick``, ticking it; None if no such workflow.
    start_child: Callable[[str, str, Dict[str, Any], bool], Optional[RunState]]
    llm: Optional[Dict[str, Any]] = None  # the llm config in effect (core/llm.py)
    tools: Optional[Dict[str, Callable[..., Any]]] = None  # the module's TOOLS
    tool_approval: Optional[Dict[str, str]] = None  # the module's TOOL_APPROVAL
    has_registry: bool = True  # the runtime can look workflows up (for children)

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        run: RunState,
        effect: Effect,
        next_node: Optional[str],
        idempotency_key: str,
        clock: Callable[[], datetime],
        start_child: Callable[[str, str, Dict[str, Any], bool], Optional[RunState]],
        llm: Optional[Dict[str, Any]] = None,
        tools: Optional[Dict[str, Callable[..., Any]]] = None,
        tool_approval: Optional[Dict[str, str]] = None,
        has_registry: bool = True,
    ) -> None:
        self.run = run
        self.effect = effect
        self.next_node = next_node
        self.idempotency_key = idempotency_key
        self.clock = clock
        self.start_child = start_child
        self.llm = llm
        self.tools = tools
        self.tool_approval = tool_approval
        self.has_registry = has_registry
    # --- end of the written-out __init__ ---

    @property
    def payload(self) -> Dict[str, Any]:
        return self.effect.payload

    def resume_to(self) -> Optional[str]:
        return self.payload.get("resume_to_node") or self.next_node


def ask_user(ctx: EffectContext) -> EffectOutcome:
    p = ctx.payload
    prompt = p.get("prompt")
    if not prompt:
        return EffectOutcome.failed("ask_user requires payload.prompt", retryable=False)
    choices = p.get("choices")
    if choices is not None and (not isinstance(choices, list) or not choices):
        return EffectOutcome.failed("ask_user payload.choices must be a non-empty list",
                                    retryable=False)
    return _with_options(ctx, WaitState(
        reason=WaitReason.USER,
        wait_key=str(p.get("wait_key") or f"user:{ctx.run.run_id}:{ctx.run.current_node}"),
        resume_to_node=ctx.resume_to(),
        result_key=ctx.effect.result_key,
        prompt=str(prompt),
        choices=[str(c) for c in choices] if choices else None,
        allow_free_text=bool(p.get("allow_free_text", True)),
    ))


def _with_options(ctx: EffectContext, wait: WaitState) -> EffectOutcome:
    """A wait with its deadline, schema, allowed actors and reminders (core/waits.py);
    a malformed option fails the effect when the wait starts, not when it times out."""
    from .waits import WaitSpecError, apply_wait_options

    if wait.reason != WaitReason.USER and ctx.payload.get("allowed_actors") is not None:
        return EffectOutcome.failed(f"{ctx.effect.type_name}: allowed_actors is for ask_user",
                                    retryable=False)
    try:
        apply_wait_options(wait, ctx.payload, ctx.clock())
    except WaitSpecError as exc:
        return EffectOutcome.failed(f"{ctx.effect.type_name}: {exc}", retryable=False)
    return EffectOutcome.waiting(wait)


def wait_event(ctx: EffectContext) -> EffectOutcome:
    wait_key = ctx.payload.get("wait_key")
    if not wait_key:
        return EffectOutcome.failed("wait_event requires payload.wait_key", retryable=False)
    return _with_options(ctx, WaitState(
        reason=WaitReason.EVENT,
        wait_key=str(wait_key),
        resume_to_node=ctx.resume_to(),
        result_key=ctx.effect.result_key,
        prompt=ctx.payload.get("prompt"),
        details=ctx.payload.get("details"),
    ))


def wait_until(ctx: EffectContext) -> EffectOutcome:
    raw = ctx.payload.get("until")
    try:
        until = parse_timestamp(raw)
    except ValueError as exc:
        return EffectOutcome.failed(f"wait_until: {exc}", retryable=False)
    until_iso = until.astimezone(timezone.utc).isoformat()
    if until <= ctx.clock():
        return EffectOutcome.completed({"until": until_iso, "ready": True})
    return EffectOutcome.waiting(WaitState(
        reason=WaitReason.UNTIL,
        until=until_iso,
        resume_to_node=ctx.resume_to(),
        result_key=ctx.effect.result_key,
        details={"requested": raw} if isinstance(raw, str) and raw != until_iso else None,
    ))


def passthrough(ctx: EffectContext) -> EffectOutcome:
    """No handler for llm_call/tool_calls: wait for whoever does the work to resume us."""
    run = ctx.run
    wait_key = ctx.payload.get("wait_key") or f"job:{run.run_id}:{run.current_node}:{run.effect_seq}"
    return EffectOutcome.waiting(WaitState(
        reason=WaitReason.JOB,
        wait_key=str(wait_key),
        resume_to_node=ctx.resume_to(),
        result_key=ctx.effect.result_key,
        details={"effect_type": ctx.effect.type_name, "request": ctx.payload},
    ))


def child_run_id(idempotency_key: str) -> str:
    """The id of the child a step starts: derived from the step's key, so replaying the
    step after a crash finds the child instead of starting a second one."""
    return str(uuid.UUID(sha256(f"{idempotency_key}:child".encode()).hexdigest()[:32]))


def start_subworkflow(ctx: EffectContext) -> EffectOutcome:
    p = ctx.payload
    workflow_id = p.get("workflow_id")
    if not workflow_id:
        return EffectOutcome.failed("start_subworkflow requires payload.workflow_id",
                                    retryable=False)
    if not ctx.has_registry:
        return EffectOutcome.failed(
            f"start_subworkflow requires a workflow_registry to find {workflow_id!r}: set it "
            "with Runtime(workflow_registry=...) or runtime.set_workflow_registry(...)",
            retryable=False)
    child_vars = p.get("vars") or {}
    if not isinstance(child_vars, dict):
        return EffectOutcome.failed("start_subworkflow payload.vars must be an object",
                                    retryable=False)
    child_id = child_run_id(ctx.idempotency_key)
    is_async = bool(p.get("async"))
    child = ctx.start_child(child_id, str(workflow_id), dict(child_vars), not is_async)
    if child is None:
        return EffectOutcome.failed(f"subworkflow {workflow_id!r} not found", retryable=False)
    if is_async:
        return EffectOutcome.completed({"sub_run_id": child_id, "async": True})
    if child.status == RunStatus.COMPLETED:
        return EffectOutcome.completed({"sub_run_id": child_id, "output": child.output})
    if child.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        return EffectOutcome.failed(
            f"subworkflow {workflow_id!r} (run {child_id}) {child.status.value}: {child.error}",
            retryable=False)
    child_wait = child.waiting
    return EffectOutcome.waiting(WaitState(
        reason=WaitReason.SUBWORKFLOW,
        wait_key=f"subworkflow:{child_id}",
        resume_to_node=ctx.resume_to(),
        result_key=ctx.effect.result_key,
        details={
            "sub_run_id": child_id,
            "sub_workflow_id": workflow_id,
            "sub_status": child.status.value,
            "sub_waiting": {"reason": child_wait.reason.value, "wait_key": child_wait.wait_key,
                            "prompt": child_wait.prompt} if child_wait else None,
        },
    ))


BuiltinEffect = Callable[[EffectContext], EffectOutcome]

#: Effect type -> built-in. A workflow module's EFFECT_HANDLERS override these.
BUILTIN_EFFECTS: Dict[str, BuiltinEffect] = {
    EffectType.ASK_USER.value: ask_user,
    EffectType.WAIT_EVENT.value: wait_event,
    EffectType.WAIT_UNTIL.value: wait_until,
    EffectType.START_SUBWORKFLOW.value: start_subworkflow,
}

#: Types that wait as a job for someone else to do when no handler is registered.
PASSTHROUGH_TYPES = frozenset({EffectType.LLM_CALL.value, EffectType.TOOL_CALLS.value})


__all__ = ["EffectContext", "BUILTIN_EFFECTS", "PASSTHROUGH_TYPES", "child_run_id",
           "ask_user", "wait_event", "wait_until", "passthrough", "start_subworkflow"]
