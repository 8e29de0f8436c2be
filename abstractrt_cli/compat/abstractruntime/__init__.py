"""AbstractRuntime 0.2.0's public API, on abstractrt's kernel and stores.

Code written for AbstractRuntime keeps working after one line, run before it imports
``abstractruntime``::

    import sys, abstractrt_cli.compat.abstractruntime as ar; sys.modules["abstractruntime"] = ar

(or a ``.pth`` file in site-packages holding that line, to alias it for every program of
an environment). Then ``from abstractruntime import Runtime, WorkflowSpec, ...`` and every
submodule (``abstractruntime.storage.json_files``, ``abstractruntime.scheduler``, ...) are
this package; without the line this package never shadows an installed AbstractRuntime.

It is not a second implementation: ``Runtime`` is abstractrt's runtime, the stores are
abstractrt's stores, the hash chain is abstractrt's chain, and ``Scheduler`` is a loop
over the runtime's ``runnable()`` and ``tick()``. Only names, signatures, defaults and
exception types are adapted where AbstractRuntime's differ. The artifact and snapshot
stores are this package's own until abstractrt's run-lifecycle stores exist.

Where abstractrt deliberately behaves differently (the eight fixes of AbstractRuntime's
weaknesses: README, "Coming from AbstractRuntime"), this package behaves like abstractrt.
The AbstractCore integration (``abstractruntime.integrations``) is not mirrored: use
abstractrt's ``llm_call`` for OpenAI-compatible servers and ``TOOLS`` for tool calls.
"""

from . import _alias
from .core.models import Effect, EffectType, RunState, RunStatus, StepPlan, WaitReason, WaitState
from .core.policy import (
    DefaultEffectPolicy,
    EffectPolicy,
    NoRetryPolicy,
    RetryPolicy,
    compute_idempotency_key,
)
from .core.runtime import Runtime
from .core.spec import WorkflowSpec
from .identity.fingerprint import ActorFingerprint
from .scheduler import (
    ScheduledRuntime,
    Scheduler,
    SchedulerStats,
    WorkflowRegistry,
    create_scheduled_runtime,
)
from .storage.artifacts import (
    Artifact,
    ArtifactMetadata,
    ArtifactStore,
    FileArtifactStore,
    InMemoryArtifactStore,
    artifact_ref,
    compute_artifact_id,
    get_artifact_id,
    is_artifact_ref,
    resolve_artifact,
)
from .storage.base import QueryableRunStore
from .storage.in_memory import InMemoryLedgerStore, InMemoryRunStore
from .storage.json_files import JsonFileRunStore, JsonlLedgerStore
from .storage.ledger_chain import HashChainedLedgerStore, verify_ledger_chain
from .storage.snapshots import InMemorySnapshotStore, JsonSnapshotStore, Snapshot, SnapshotStore

_alias.install()

__version__ = "0.2.0"  # the AbstractRuntime API this mirrors

__all__ = [
    "Effect", "EffectType", "RunState", "RunStatus", "StepPlan", "WaitReason", "WaitState",
    "WorkflowSpec", "Runtime",
    "WorkflowRegistry", "Scheduler", "SchedulerStats", "ScheduledRuntime", "create_scheduled_runtime",
    "QueryableRunStore", "InMemoryRunStore", "InMemoryLedgerStore", "JsonFileRunStore",
    "JsonlLedgerStore", "HashChainedLedgerStore", "verify_ledger_chain",
    "Snapshot", "SnapshotStore", "InMemorySnapshotStore", "JsonSnapshotStore",
    "Artifact", "ArtifactMetadata", "ArtifactStore", "InMemoryArtifactStore", "FileArtifactStore",
    "artifact_ref", "is_artifact_ref", "get_artifact_id", "resolve_artifact", "compute_artifact_id",
    "ActorFingerprint",
    "EffectPolicy", "DefaultEffectPolicy", "RetryPolicy", "NoRetryPolicy", "compute_idempotency_key",
]
