"""Runtime configuration: resource limits and how the runtime behaves under retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .dc import FACTORY, Frozen
from .limits import DEFAULT_MAX_ITERATIONS, DEFAULT_MAX_TOKENS, DEFAULT_WARN_PCT, LIMIT_KEYS

__all__ = ["RuntimeConfig", "LIMIT_KEYS"]


@dataclass(init=False, repr=False, eq=False)
class RuntimeConfig(Frozen):
    """Limits for new runs (``vars["_limits"]``) and runtime behaviour.

    ``max_inline_backoff``: a retry backoff up to this many seconds is slept inside the
    tick; a longer one checkpoints the run as waiting (reason ``until``) so a later tick
    retries and no process is blocked. ``lock_timeout``: how long tick/resume/cancel
    wait for a run another process holds before raising ``RunBusyError``.
    """

    max_iterations: int = DEFAULT_MAX_ITERATIONS
    warn_iterations_pct: int = DEFAULT_WARN_PCT
    max_tokens: Optional[int] = None
    max_output_tokens: Optional[int] = None
    warn_tokens_pct: int = DEFAULT_WARN_PCT
    max_history_messages: int = -1
    model_capabilities: Dict[str, Any] = field(default_factory=dict)
    max_inline_backoff: float = 2.0
    lock_timeout: float = 2.0
    # A node or effect handler running longer than this fails its attempt (None: no limit).
    step_timeout: Optional[float] = 600.0
    # The run file is rewritten at least every this many effects (and at every wait, end
    # and operator action): the ledger is the truth, records beyond it are rolled forward.
    effects_per_checkpoint: int = 32
    # HMAC-SHA256 key: checkpoints are signed with it (see core/integrity.py).
    signing_key: Optional[bytes] = None
    # The config key ``llm``: base_url, model, api_key_env, timeout (core/llm.py).
    llm: Optional[Dict[str, Any]] = None

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (frozen) ---
    def __init__(
        self,
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
        warn_iterations_pct: int = DEFAULT_WARN_PCT,
        max_tokens: Optional[int] = None,
        max_output_tokens: Optional[int] = None,
        warn_tokens_pct: int = DEFAULT_WARN_PCT,
        max_history_messages: int = -1,
        model_capabilities: Dict[str, Any] = FACTORY,
        max_inline_backoff: float = 2.0,
        lock_timeout: float = 2.0,
        step_timeout: Optional[float] = 600.0,
        effects_per_checkpoint: int = 32,
        signing_key: Optional[bytes] = None,
        llm: Optional[Dict[str, Any]] = None,
    ) -> None:
        object.__setattr__(self, 'max_iterations', max_iterations)
        object.__setattr__(self, 'warn_iterations_pct', warn_iterations_pct)
        object.__setattr__(self, 'max_tokens', max_tokens)
        object.__setattr__(self, 'max_output_tokens', max_output_tokens)
        object.__setattr__(self, 'warn_tokens_pct', warn_tokens_pct)
        object.__setattr__(self, 'max_history_messages', max_history_messages)
        object.__setattr__(self, 'model_capabilities', dict() if model_capabilities is FACTORY else model_capabilities)
        object.__setattr__(self, 'max_inline_backoff', max_inline_backoff)
        object.__setattr__(self, 'lock_timeout', lock_timeout)
        object.__setattr__(self, 'step_timeout', step_timeout)
        object.__setattr__(self, 'effects_per_checkpoint', effects_per_checkpoint)
        object.__setattr__(self, 'signing_key', signing_key)
        object.__setattr__(self, 'llm', llm)
    # --- end of the written-out __init__ ---

    def to_limits_dict(self) -> Dict[str, Any]:
        return {
            "max_iterations": self.max_iterations,
            "current_iteration": 0,
            "max_tokens": self.max_tokens or self.model_capabilities.get("max_tokens", DEFAULT_MAX_TOKENS),
            "max_output_tokens": self.max_output_tokens,
            "estimated_tokens_used": 0,
            "max_history_messages": self.max_history_messages,
            "warn_iterations_pct": self.warn_iterations_pct,
            "warn_tokens_pct": self.warn_tokens_pct,
        }
