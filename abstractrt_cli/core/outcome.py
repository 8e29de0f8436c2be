"""What an effect handler produces, and how a handler says "do not retry this"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .models import WaitState


class NonRetryableError(Exception):
    """Raise from an effect handler to fail at once, whatever the retry policy says."""


@dataclass(frozen=True)
class EffectOutcome:
    """What an effect handler produced: completed (with a result), waiting, or failed."""

    status: str  # "completed" | "waiting" | "failed"
    result: Optional[Any] = None
    wait: Optional[WaitState] = None
    error: Optional[str] = None
    retryable: bool = True
    # Seconds the server asked us to wait before retrying (HTTP Retry-After).
    retry_after: Optional[float] = None

    @classmethod
    def completed(cls, result: Optional[Any] = None) -> "EffectOutcome":
        return cls(status="completed", result=result)

    @classmethod
    def waiting(cls, wait: WaitState) -> "EffectOutcome":
        return cls(status="waiting", wait=wait)

    @classmethod
    def failed(cls, error: str, *, retryable: bool = True) -> "EffectOutcome":
        return cls(status="failed", error=error, retryable=retryable)
