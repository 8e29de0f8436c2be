"""What an effect handler produces, and how a handler says "do not retry this"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .dc import Frozen
from .models import WaitState


class NonRetryableError(Exception):
    """Raise from an effect handler to fail at once, whatever the retry policy says."""


@dataclass(init=False, repr=False, eq=False)
class EffectOutcome(Frozen):
    """What an effect handler produced: completed (with a result), waiting, or failed."""

    status: str  # "completed" | "waiting" | "failed"
    result: Optional[Any] = None
    wait: Optional[WaitState] = None
    error: Optional[str] = None
    retryable: bool = True
    # Seconds the server asked us to wait before retrying (HTTP Retry-After).
    retry_after: Optional[float] = None

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (frozen) ---
    def __init__(
        self,
        status: str,
        result: Optional[Any] = None,
        wait: Optional[WaitState] = None,
        error: Optional[str] = None,
        retryable: bool = True,
        retry_after: Optional[float] = None,
    ) -> None:
        object.__setattr__(self, 'status', status)
        object.__setattr__(self, 'result', result)
        object.__setattr__(self, 'wait', wait)
        object.__setattr__(self, 'error', error)
        object.__setattr__(self, 'retryable', retryable)
        object.__setattr__(self, 'retry_after', retry_after)
    # --- end of the written-out __init__ ---

    @classmethod
    def completed(cls, result: Optional[Any] = None) -> "EffectOutcome":
        return cls(status="completed", result=result)

    @classmethod
    def waiting(cls, wait: WaitState) -> "EffectOutcome":
        return cls(status="waiting", wait=wait)

    @classmethod
    def failed(cls, error: str, *, retryable: bool = True) -> "EffectOutcome":
        return cls(status="failed", error=error, retryable=retryable)
