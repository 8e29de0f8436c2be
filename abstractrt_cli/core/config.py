"""Runtime configuration: resource limits and how the runtime behaves under retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

# Limit keys a run may change while it lives, and the types each accepts.
LIMIT_KEYS: Dict[str, tuple] = {
    "max_iterations": (int,),
    "current_iteration": (int,),
    "max_tokens": (int,),
    "max_output_tokens": (int, type(None)),
    "estimated_tokens_used": (int,),
    "max_history_messages": (int,),
    "warn_iterations_pct": (int,),
    "warn_tokens_pct": (int,),
}


@dataclass(frozen=True)
class RuntimeConfig:
    """Limits for new runs (``vars["_limits"]``) and runtime behaviour.

    ``max_inline_backoff``: a retry backoff up to this many seconds is slept inside the
    tick; a longer one checkpoints the run as waiting (reason ``until``) so a later tick
    retries and no process is blocked. ``lock_timeout``: how long tick/resume/cancel
    wait for a run another process holds before raising ``RunBusyError``.
    """

    max_iterations: int = 25
    warn_iterations_pct: int = 80
    max_tokens: Optional[int] = None
    max_output_tokens: Optional[int] = None
    warn_tokens_pct: int = 80
    max_history_messages: int = -1
    model_capabilities: Dict[str, Any] = field(default_factory=dict)
    max_inline_backoff: float = 2.0
    lock_timeout: float = 2.0

    def to_limits_dict(self) -> Dict[str, Any]:
        return {
            "max_iterations": self.max_iterations,
            "current_iteration": 0,
            "max_tokens": self.max_tokens or self.model_capabilities.get("max_tokens", 32768),
            "max_output_tokens": self.max_output_tokens,
            "estimated_tokens_used": 0,
            "max_history_messages": self.max_history_messages,
            "warn_iterations_pct": self.warn_iterations_pct,
            "warn_tokens_pct": self.warn_tokens_pct,
        }
