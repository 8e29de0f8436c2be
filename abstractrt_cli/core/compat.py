"""AbstractRuntime look-alikes: plans, outcomes and handlers written for it run unchanged.

Workflow modules written for AbstractRuntime return its ``StepPlan``/``Effect`` objects
and register handlers with its signatures; these functions turn them into ours.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, Callable, Optional

from .models import Effect, EffectType, RunState, StepPlan, WaitReason, WaitState, effect_type_name
from .outcome import EffectOutcome

_BUILTIN_TYPES = {t.value: t for t in EffectType}


def coerce_plan(obj: Any, node_id: str) -> StepPlan:
    """Accept our StepPlan or a look-alike (AbstractRuntime's) and normalise it."""
    if isinstance(obj, StepPlan) and (obj.effect is None or isinstance(obj.effect, Effect)):
        return obj
    if obj is None or not hasattr(obj, "node_id"):
        raise TypeError(f"node {node_id!r} returned {type(obj).__name__}, not a StepPlan")
    eff = getattr(obj, "effect", None)
    if eff is not None and not isinstance(eff, Effect):
        etype: Any = effect_type_name(eff.type)
        # Keep built-in types as our enum: AbstractRuntime's policies read ``type.value``.
        etype = _BUILTIN_TYPES.get(etype, etype)
        eff = Effect(
            type=etype,
            payload=dict(getattr(eff, "payload", None) or {}),
            result_key=getattr(eff, "result_key", None),
        )
    return StepPlan(
        node_id=obj.node_id or node_id,
        effect=eff,
        next_node=getattr(obj, "next_node", None),
        complete_output=getattr(obj, "complete_output", None),
    )


def coerce_outcome(obj: Any) -> EffectOutcome:
    """A handler's return value as an EffectOutcome (a dict or None means completed)."""
    if isinstance(obj, EffectOutcome):
        return obj
    if obj is None or isinstance(obj, dict):
        return EffectOutcome.completed(obj)
    status = getattr(obj, "status", None)
    if status in ("completed", "waiting", "failed"):
        wait = getattr(obj, "wait", None)
        return EffectOutcome(
            status=status,
            result=getattr(obj, "result", None),
            wait=WaitState.coerce(wait) if wait is not None else None,
            error=getattr(obj, "error", None),
        )
    raise TypeError(f"effect handler returned {type(obj).__name__}: expected a dict or EffectOutcome")


def check_outcome(outcome: EffectOutcome, etype: str) -> EffectOutcome:
    """Refuse outcomes the runtime cannot act on (they would crash or pass as success)."""
    if outcome.status not in ("completed", "waiting", "failed"):
        return EffectOutcome.failed(
            f"effect handler for {etype!r} returned unknown status {outcome.status!r}",
            retryable=False)
    if outcome.status == "waiting":
        try:
            wait = WaitState.coerce(outcome.wait) if outcome.wait is not None else None
            if wait is not None and not isinstance(wait.reason, WaitReason):  # e.g. "user"
                wait = WaitState.from_dict({f.name: getattr(wait, f.name) for f in fields(wait)})
        except (AttributeError, TypeError, ValueError) as exc:
            return EffectOutcome.failed(
                f"effect handler for {etype!r} returned an invalid wait: {exc}", retryable=False)
        if wait is None:
            return EffectOutcome.failed(
                f"effect handler for {etype!r} returned a waiting outcome without a wait",
                retryable=False)
        if wait is not outcome.wait:
            return EffectOutcome.waiting(wait)
    return outcome


def call_handler(handler: Callable[..., Any], run: RunState, effect: Effect,
                 next_node: Optional[str]) -> Any:
    """Handlers take ``(run, effect, default_next_node)`` or the older ``(run, effect)``."""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params) or len(positional) >= 3 or not params:
        return handler(run, effect, next_node)
    return handler(run, effect)
