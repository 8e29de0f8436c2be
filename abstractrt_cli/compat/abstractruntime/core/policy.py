"""AbstractRuntime's ``core.policy``: the kernel's effect policies, and its key function."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ....core.policy import DefaultEffectPolicy, EffectPolicy, NoRetryPolicy, RetryPolicy
from ....core.policy import compute_idempotency_key as _kernel_key

__all__ = ["EffectPolicy", "DefaultEffectPolicy", "RetryPolicy", "NoRetryPolicy",
           "compute_idempotency_key"]


def compute_idempotency_key(*, run_id: str, node_id: str, effect: Any, effect_seq: int = 0) -> str:
    """The 32-hex-digit key the runtime gives an effect step, from AbstractRuntime's arguments.

    abstractrt's key also holds the run's effect sequence number (how many effect steps
    it has finished), so a loop's second visit of a node is not mistaken for a replay of
    the first. ``effect_seq`` defaults to 0: the key of a run's first effect step.
    """
    return _kernel_key(run=SimpleNamespace(run_id=run_id, effect_seq=effect_seq),
                       node_id=node_id, effect=effect)
