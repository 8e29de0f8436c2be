"""AbstractRuntime's ``core.models``: abstractrt's own classes, plus ``StepRecord``'s builders.

Runs, waits, effects and plans are the kernel's classes themselves (the same objects the
runtime ticks), so values pass between this layer and ``abstractrt_cli`` unchanged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ....core.models import (
    Effect,
    EffectType,
    LimitWarning,
    RecordKind,
    RunState,
    RunStatus,
    StepPlan,
    StepStatus,
    WaitReason,
    WaitState,
    effect_type_name,
    utc_now,
    utc_now_iso,
)
from ....core.models import StepRecord as _KernelStepRecord

__all__ = [
    "Effect", "EffectType", "LimitWarning", "RunState", "RunStatus", "StepPlan", "StepRecord",
    "StepStatus", "WaitReason", "WaitState", "utc_now",
]


def _effect_json(effect: Any) -> Optional[Dict[str, Any]]:
    if effect is None:
        return None
    to_json = getattr(effect, "to_jsonable", None)
    if to_json is not None:
        return to_json()
    return {"type": effect_type_name(effect.type), "payload": effect.payload,
            "result_key": effect.result_key}


@dataclass
class StepRecord(_KernelStepRecord):
    """The kernel's ledger record with AbstractRuntime's builders (``start``, ``finish_*``).

    Records built here go into any abstractrt ledger store, which chains them (``seq``,
    ``prev_hash``, ``record_hash``) as it appends them. ``signature`` is kept for code that
    sets it; the chain hash leaves it out, as AbstractRuntime's does.
    """

    signature: Optional[str] = None

    @classmethod
    def start(cls, *, run: RunState, node_id: str, effect: Optional[Any],
              attempt: int = 1, idempotency_key: Optional[str] = None) -> "StepRecord":
        return cls(
            run_id=run.run_id,
            step_id=str(uuid.uuid4()),
            node_id=node_id,
            status=StepStatus.STARTED,
            effect=_effect_json(effect),
            actor_id=run.actor_id,
            session_id=getattr(run, "session_id", None),
            attempt=attempt,
            idempotency_key=idempotency_key,
            kind=RecordKind.EFFECT,
        )

    def finish_success(self, result: Optional[Dict[str, Any]] = None) -> "StepRecord":
        self.status = StepStatus.COMPLETED
        self.result = result
        self.ended_at = utc_now_iso()
        return self

    def finish_waiting(self, wait_state: WaitState) -> "StepRecord":
        self.status = StepStatus.WAITING
        self.result = {"wait": WaitState.coerce(wait_state).to_jsonable()}
        self.ended_at = utc_now_iso()
        return self

    def finish_failure(self, error: str) -> "StepRecord":
        self.status = StepStatus.FAILED
        self.error = error
        self.ended_at = utc_now_iso()
        return self

    def to_jsonable(self) -> Dict[str, Any]:
        doc = super().to_jsonable()
        if self.signature is not None:
            doc["signature"] = self.signature
        return doc
