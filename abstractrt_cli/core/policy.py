"""Effect policies: how many attempts, how long between them, and idempotency keys."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Protocol

from .dc import FACTORY, Plain
from .models import Effect, RunState, effect_type_name
from .sha import sha256


class EffectPolicy(Protocol):
    def max_attempts(self, effect: Effect) -> int: ...

    def backoff_seconds(self, *, effect: Effect, attempt: int) -> float: ...

    def idempotency_key(self, *, run: RunState, node_id: str, effect: Effect) -> str: ...


def compute_idempotency_key(*, run: RunState, node_id: str, effect: Effect) -> str:
    """Key of one effect step: run, node, effect *and* the run's effect sequence number.

    The sequence number counts the effect steps the run has finished, so a loop that
    reaches the same node with the same payload gets a new key each time (AbstractRuntime
    keyed on payload alone and reused the first iteration's result), while a crash
    between an effect and its checkpoint replays with the same key and reuses the result.
    """
    key_data = {
        "run_id": run.run_id,
        "seq": run.effect_seq,
        "node_id": node_id,
        "effect_type": effect_type_name(effect.type),
        "effect_payload": effect.payload,
    }
    text = json.dumps(key_data, sort_keys=True, separators=(",", ":"), default=str)
    return sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(init=False, repr=False, eq=False)
class DefaultEffectPolicy(Plain):
    """Exponential backoff ``base * 2**(attempt-1)`` capped at ``default_backoff_max``."""

    default_max_attempts: int = 1
    default_backoff_base: float = 1.0
    default_backoff_max: float = 60.0
    effect_max_attempts: Dict[str, int] = field(default_factory=dict)

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        default_max_attempts: int = 1,
        default_backoff_base: float = 1.0,
        default_backoff_max: float = 60.0,
        effect_max_attempts: Dict[str, int] = FACTORY,
    ) -> None:
        self.default_max_attempts = default_max_attempts
        self.default_backoff_base = default_backoff_base
        self.default_backoff_max = default_backoff_max
        self.effect_max_attempts = dict() if effect_max_attempts is FACTORY else effect_max_attempts
        self.__post_init__()
    # --- end of the written-out __init__ ---

    def __post_init__(self) -> None:
        if self.effect_max_attempts is None:  # AbstractRuntime passes None explicitly
            self.effect_max_attempts = {}
        self.effect_max_attempts = {
            effect_type_name(k): int(v) for k, v in self.effect_max_attempts.items()
        }

    def max_attempts(self, effect: Effect) -> int:
        return max(1, self.effect_max_attempts.get(effect_type_name(effect.type),
                                                   self.default_max_attempts))

    def backoff_seconds(self, *, effect: Effect, attempt: int) -> float:
        delay = self.default_backoff_base * (2 ** (attempt - 1))
        return max(0.0, min(delay, self.default_backoff_max))

    def idempotency_key(self, *, run: RunState, node_id: str, effect: Effect) -> str:
        return compute_idempotency_key(run=run, node_id=node_id, effect=effect)


class RetryPolicy(DefaultEffectPolicy):
    """Retries for LLM and tool calls; ``max_attempts`` sets a default for every other type.

    ``effect_max_attempts`` overrides per effect type (custom string types included).
    """

    def __init__(
        self,
        *,
        llm_max_attempts: int = 3,
        tool_max_attempts: int = 2,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_attempts: int = 1,
        effect_max_attempts: Optional[Dict[Any, int]] = None,
    ) -> None:
        per_type: Dict[Any, int] = {"llm_call": llm_max_attempts, "tool_calls": tool_max_attempts}
        per_type.update(effect_max_attempts or {})
        super().__init__(
            default_max_attempts=max_attempts,
            default_backoff_base=backoff_base,
            default_backoff_max=backoff_max,
            effect_max_attempts=per_type,
        )


class NoRetryPolicy(DefaultEffectPolicy):
    """Every effect gets one attempt."""

    def __init__(self) -> None:
        super().__init__(default_max_attempts=1)
