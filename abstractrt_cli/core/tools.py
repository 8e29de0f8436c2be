"""The built-in ``tool_calls``: a workflow module's ``TOOLS`` run locally, with approvals.

The payload's ``tool_calls`` is the list an ``llm_call`` returns (``{call_id, name,
arguments}``), so a result can be passed on as it is. Calls run in order as
``fn(**arguments)``; the effect's result is ``{"results": [{call_id, name, success,
output, error}]}`` and the effect's ledger record holds each call's arguments and result.
A tool that raises is a failed call (``success: false``), not a failed run.

``TOOL_APPROVAL = {"name": "ask" | "deny"}``: ``deny`` never runs the tool; ``ask`` makes
the call wait for a person first — an ``ask_user`` wait showing the tool and its
arguments, choices ``approve``/``deny``, no free text — one wait per call, in order.
Between those waits the results so far live in ``run.tool_progress`` (checkpointed with
the wait, and in the wait's ledger record), so an approved call never re-runs the calls
before it.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional

from .effects import EffectContext
from .models import WaitReason, WaitState
from .outcome import EffectOutcome

APPROVE, DENY = "approve", "deny"
_MAX_SHOWN = 400


def _calls(payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    calls = payload.get("tool_calls")
    if not isinstance(calls, list):
        raise ValueError("tool_calls needs payload.tool_calls: a list of {call_id, name, arguments}")
    out = []
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"tool call {i} must be an object with a name")
        args = call.get("arguments") or {}
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        if not isinstance(args, dict):
            raise ValueError(f"tool call {i} ({call['name']}): arguments must be an object")
        out.append({"call_id": call.get("call_id") or call.get("id") or f"call_{i}",
                    "name": call["name"], "arguments": args})
    return out


def _result(call: Dict[str, Any], *, success: bool, output: Any = None,
            error: Optional[str] = None) -> Dict[str, Any]:
    return {"call_id": call["call_id"], "name": call["name"], "success": success,
            "output": output, "error": error}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def approval_wait(ctx: EffectContext, call: Dict[str, Any], index: int,
                  results: List[Dict[str, Any]]) -> WaitState:
    args = json.dumps(call["arguments"], ensure_ascii=False, sort_keys=True)
    if len(args) > _MAX_SHOWN:
        args = args[:_MAX_SHOWN] + "…"
    return WaitState(
        reason=WaitReason.USER,
        wait_key=f"tool:{ctx.run.run_id}:{ctx.idempotency_key[:12]}:{index}",
        resume_to_node=ctx.run.current_node,  # the node re-issues the call list and goes on
        result_key=None,
        prompt=f"Run tool {call['name']} with {args}?",
        choices=[APPROVE, DENY],
        allow_free_text=False,
        details={"tool_approval": {"index": index, "call": call,
                                   "effect_key": ctx.idempotency_key, "results_so_far": results}},
    )


def tool_calls(ctx: EffectContext) -> EffectOutcome:
    """Run the calls with the workflow's TOOLS (approvals first, where asked for)."""
    tools: Dict[str, Callable[..., Any]] = ctx.tools or {}
    approval: Dict[str, str] = ctx.tool_approval or {}
    try:
        calls = _calls(ctx.payload)
    except ValueError as exc:
        return EffectOutcome.failed(str(exc), retryable=False)
    run = ctx.run
    progress = run.tool_progress if (run.tool_progress or {}).get("effect_key") == ctx.idempotency_key else None
    results: List[Dict[str, Any]] = list((progress or {}).get("results") or [])
    decisions: Dict[str, str] = dict((progress or {}).get("decisions") or {})
    for i in range(len(results), len(calls)):
        call = calls[i]
        rule = approval.get(call["name"])
        if rule == "deny" or (rule == "ask" and decisions.get(str(i)) == DENY):
            why = "TOOL_APPROVAL denies it" if rule == "deny" else "a person denied it"
            results.append(_result(call, success=False, error=f"tool {call['name']!r} was not run: {why}"))
            continue
        if rule == "ask" and decisions.get(str(i)) != APPROVE:
            run.tool_progress = {"effect_key": ctx.idempotency_key, "results": results,
                                 "decisions": decisions}
            return EffectOutcome.waiting(approval_wait(ctx, call, i, results))
        fn = tools.get(call["name"])
        if fn is None:
            results.append(_result(call, success=False, error=f"no tool named {call['name']!r}"))
            continue
        try:
            output = fn(**call["arguments"])
        except Exception as exc:  # a failed call is a result for the model, not a crash
            results.append(_result(call, success=False, error=f"{type(exc).__name__}: {exc}"))
            continue
        results.append(_result(call, success=True, output=_jsonable(output)))
    run.tool_progress = None
    return EffectOutcome.completed({"results": results})
