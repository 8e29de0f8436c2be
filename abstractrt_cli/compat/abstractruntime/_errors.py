"""Errors this layer raises where AbstractRuntime raised a built-in exception.

Each is an ``AbstractRTError`` (abstractrt's one exception tree, one ``code`` per class)
that is also the built-in AbstractRuntime raised, so ``except ValueError`` /
``except TypeError`` written for it still catch it. The two resume refusals also derive
from the kernel's classes (``RunNotWaitingError``, ``WaitKeyMismatchError``): code that
catches those catches these. Where the kernel's own error is the right one, this layer
raises it, worded as AbstractRuntime worded it (``reworded``).
"""

from __future__ import annotations

from typing import Optional, TypeVar

from ...errors import (
    AbstractRTError,
    RunNotWaitingError,
    StoreCapabilityError,
    WaitKeyMismatchError,
)

E = TypeVar("E", bound=AbstractRTError)


def reworded(exc: E, message: str) -> E:
    """The same error (class, code, fields) with AbstractRuntime's message."""
    exc.message = message
    exc.args = (message,)
    return exc


class NotWaitingError(RunNotWaitingError, ValueError):
    """Resume refused: the run is not waiting (AbstractRuntime API; also a ValueError)."""

    code = "abstractruntime_not_waiting"

    def __init__(self, run_id: str, status: str, *, detail: Optional[str] = None) -> None:
        AbstractRTError.__init__(self, detail or f"Run '{run_id}' is not waiting (status={status})")
        self.run_id = run_id
        self.status = status


class KeyMismatchError(WaitKeyMismatchError, ValueError):
    """Resume refused: the run waits on another wait key (AbstractRuntime API; also a ValueError)."""

    code = "abstractruntime_wait_key_mismatch"

    def __init__(self, run_id: str, expected: Optional[str], given: str) -> None:
        AbstractRTError.__init__(
            self, f"wait_key mismatch: expected {expected!r}, got {given!r} (run {run_id})")
        self.run_id = run_id
        self.expected = expected
        self.given = given


class UnsupportedStoreError(StoreCapabilityError, TypeError):
    """The store lacks what the runtime or the scheduler needs (also a TypeError)."""

    code = "store_unsupported"


class InvalidArtifactIdError(AbstractRTError, ValueError):
    """An invalid artifact id: empty, or characters other than letters, digits, - and _."""

    code = "invalid_artifact_id"

    def __init__(self, artifact_id: str) -> None:
        if not artifact_id:
            message = "artifact_id cannot be empty"
        else:
            message = (f"Invalid artifact_id {artifact_id!r}: must contain only alphanumeric "
                       "characters, hyphens, and underscores")
        super().__init__(message)
        self.artifact_id = artifact_id


class InvalidSnapshotIdError(AbstractRTError, ValueError):
    """An invalid snapshot id: empty, or characters other than letters, digits, - and _."""

    code = "invalid_snapshot_id"

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(f"Invalid snapshot_id {snapshot_id!r}: must be non-empty and contain "
                         "only alphanumeric characters, hyphens, and underscores")
        self.snapshot_id = snapshot_id


class CorruptArtifactError(AbstractRTError):
    """An artifact whose bytes no longer match its SHA-256, or whose metadata cannot be read."""

    code = "artifact_corrupt"

    def __init__(self, artifact_id: str, why: str) -> None:
        super().__init__(f"artifact {artifact_id}: {why}")
        self.artifact_id = artifact_id


class CorruptSnapshotError(AbstractRTError):
    """An unreadable snapshot file."""

    code = "snapshot_corrupt"

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"snapshot file {path}: {why}")
        self.path = path
