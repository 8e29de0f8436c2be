"""Errors this layer raises where AbstractRuntime raised a built-in exception.

Each is an ``AbstractRTError`` (abstractrt's one exception tree) that is also the built-in
AbstractRuntime raised, so ``except ValueError`` / ``except KeyError`` written for it still
catch it. Those that refine a kernel error keep its ``code``: they are the same kind of
failure, worded as AbstractRuntime worded it.
"""

from __future__ import annotations

from typing import Optional

from ...core.outcome import NonRetryableError
from ...errors import (
    AbstractRTError,
    DuplicateWorkflowError,
    RunNotWaitingError,
    StoreCapabilityError,
    UnknownWorkflowError,
    WaitKeyMismatchError,
)


class NotWaitingError(RunNotWaitingError, ValueError):
    """A resume of a run that is not waiting (AbstractRuntime: ``ValueError``)."""

    def __init__(self, run_id: str, status: str, *, detail: Optional[str] = None) -> None:
        AbstractRTError.__init__(self, detail or f"Run '{run_id}' is not waiting (status={status})")
        self.run_id = run_id
        self.status = status


class KeyMismatchError(WaitKeyMismatchError, ValueError):
    """A resume with another wait key than the run's (AbstractRuntime: ``ValueError``)."""

    def __init__(self, run_id: str, expected: Optional[str], given: str) -> None:
        AbstractRTError.__init__(
            self, f"wait_key mismatch: expected {expected!r}, got {given!r} (run {run_id})")
        self.run_id = run_id
        self.expected = expected
        self.given = given


class WorkflowAlreadyRegisteredError(DuplicateWorkflowError, ValueError):
    code = "workflow_already_registered"

    def __init__(self, workflow_id: str) -> None:
        AbstractRTError.__init__(
            self, f"Workflow '{workflow_id}' is already registered. "
                  "Use unregister() first if you want to replace it.")
        self.workflow_id = workflow_id
        self.paths = ()


class WorkflowNotRegisteredError(UnknownWorkflowError):
    """A registry lookup of an id nobody registered (a ``KeyError``)."""

    def __init__(self, workflow_id: str) -> None:
        AbstractRTError.__init__(self, f"Workflow '{workflow_id}' is not registered.")
        self.workflow_id = workflow_id


class NoWorkflowRegistryError(AbstractRTError, NonRetryableError):
    """``start_subworkflow`` on a runtime that has no registry to find the child in."""

    code = "no_workflow_registry"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"start_subworkflow requires a workflow_registry to find {workflow_id!r}: "
            "set it via Runtime(workflow_registry=...) or runtime.set_workflow_registry(...)")
        self.workflow_id = workflow_id


class UnsupportedStoreError(StoreCapabilityError, TypeError):
    """A store that lacks what the runtime needs (AbstractRuntime: ``TypeError``)."""

    code = "store_unsupported"


class InvalidArtifactIdError(AbstractRTError, ValueError):
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
    code = "invalid_snapshot_id"

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(f"Invalid snapshot_id {snapshot_id!r}: must be non-empty and contain "
                         "only alphanumeric characters, hyphens, and underscores")
        self.snapshot_id = snapshot_id


class CorruptArtifactError(AbstractRTError):
    """An artifact whose bytes no longer match its recorded SHA-256, or unreadable metadata."""

    code = "artifact_corrupt"

    def __init__(self, artifact_id: str, why: str) -> None:
        super().__init__(f"artifact {artifact_id}: {why}")
        self.artifact_id = artifact_id


class CorruptSnapshotError(AbstractRTError):
    code = "snapshot_corrupt"

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"snapshot file {path}: {why}")
        self.path = path
