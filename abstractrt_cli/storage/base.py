"""Store protocols: what the kernel needs, what queries need, and the bundle of both.

Every store (memory, files, PostgreSQL, any added later) passes the same contract suite
(``tests/store_contract.py``). Nothing outside ``storage/`` names a concrete store: the
CLI and ``ops`` get a ``Stores`` from ``storage.open_stores(...)``.

The rules the kernel relies on:

- ``LedgerStore.append`` is durable when it returns (an effect's outcome is in the
  ledger before the run moves past it: record before proceeding).
- ``RunStore.save`` is atomic: after a crash a run is at its old or its new checkpoint.
- A store may also offer ``commit(records, run)`` (``CommitStore``): append the records
  and, if ``run`` is given, checkpoint it covering them, *in one transaction*. The
  kernel uses it when present (PostgreSQL); otherwise it appends, then saves, and rolls
  forward whatever a crash left beyond the checkpoint (``core/replay.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import (
    Any, Callable, ContextManager, Dict, FrozenSet, Iterator, List, Optional, Protocol, Sequence,
    Tuple, runtime_checkable,
)

from ..core.dc import FACTORY, Plain
from ..core.models import KeptEvent, RunState, RunStatus, StepRecord, WaitReason
from ..errors import CorruptRunError

OnCorrupt = Optional[Callable[[CorruptRunError], None]]


@runtime_checkable
class RunStore(Protocol):
    """What the kernel needs to keep runs."""

    def save(self, run: RunState) -> None:
        """Persist a run (atomically, for durable stores)."""

    def load(self, run_id: str) -> Optional[RunState]:
        """The run, or None if there is no such run; CorruptRunError if unreadable."""

    def lock(self, run_id: str, *, timeout: float) -> ContextManager[None]:
        """Hold the run exclusively; ``timeout=0`` tries once. Raises RunBusyError."""

    def list_children(
        self, *, parent_run_id: str, status: Optional[RunStatus] = None
    ) -> List[RunState]:
        """Runs whose ``parent_run_id`` is the given run, oldest first."""


@runtime_checkable
class RunQueries(Protocol):
    """What the commands need to find runs. Costs grow with the matches, not the total."""

    def validate_run_id(self, run_id: Any) -> str:
        """The run id if this store can keep it; else InvalidRunIdError."""

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        wait_reason: Optional[WaitReason] = None,
        wait_key: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        created_since: Optional[datetime] = None,
        limit: Optional[int] = None,
        on_corrupt: OnCorrupt = None,
    ) -> List[RunState]:
        """Matching runs, newest (``created_at``) first.

        A corrupt run among the candidates is passed to ``on_corrupt`` (raised when it
        is None); it is never silently skipped, and it counts towards ``limit``.
        """

    def list_due_wait_until(
        self, *, now: datetime, limit: Optional[int] = None, on_corrupt: OnCorrupt = None
    ) -> List[RunState]:
        """Runs waiting with reason ``until`` whose time is at or before ``now``, earliest first."""

    def earliest_due(self) -> Optional[datetime]:
        """The earliest ``until`` of any waiting run (the worker sleeps until then)."""

    def match_prefix(self, prefix: str, *, limit: int = 20) -> List[str]:
        """Ids of runs starting with ``prefix`` (at most ``limit``), sorted."""


@runtime_checkable
class LedgerStore(Protocol):
    """Hash-chained, append-only records, one chain per run."""

    def append(self, record: StepRecord) -> Dict[str, Any]:
        """Chain (``seq``, ``prev_hash``, ``record_hash``) and durably append a record."""

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        """Every record of a run, oldest first."""

    def head(self, run_id: str) -> Tuple[int, Optional[str]]:
        """(record count, hash of the last record): cheap, without reading everything."""

    def records_since(self, run_id: str, count: int) -> List[Dict[str, Any]]:
        """Records whose ``seq`` is >= ``count``: those after a checkpoint. Cheap."""


@runtime_checkable
class EventStore(Protocol):
    """The event mailbox (PRODUCT §8): emitted events kept until they expire.

    Costs grow with the events kept for one key, not with every event kept."""

    def put(self, event: KeptEvent) -> None:
        """Keep an event (its id is new)."""

    def oldest_unreceived(self, key: str, *, run_id: str, emitted_after: datetime,
                          now: datetime, exclude: Sequence[str] = ()) -> Optional[KeptEvent]:
        """The oldest kept event for ``key`` emitted after ``emitted_after`` (strictly),
        not expired at ``now``, that ``run_id`` has not received, not in ``exclude``."""

    def mark_received(self, event_id: str, run_id: str) -> None:
        """Note that ``run_id`` received the event (idempotent)."""

    def list_events(self, *, key_pattern: Optional[str] = None) -> List[KeptEvent]:
        """Kept events, oldest first; ``key_pattern`` is shell-style (``fnmatch``)."""

    def prune(self, *, now: datetime) -> int:
        """Drop the events expired at ``now``; how many were dropped."""


@runtime_checkable
class SnapshotStore(Protocol):
    """Named copies of a run's state (PRODUCT §9; AbstractRuntime's SnapshotStore).

    A snapshot is a dict ``{run_id, name, tags, state (RunState JSON), ledger_count,
    ledger_head, created_at, actor_id}``; ``name`` is unique per run."""

    def put_snapshot(self, snapshot: Dict[str, Any]) -> None:
        """Keep it; SnapshotExistsError if the run has a snapshot of that name."""

    def get_snapshot(self, run_id: str, name: str) -> Optional[Dict[str, Any]]:
        """The snapshot, or None."""

    def list_snapshots(self, *, run_id: Optional[str] = None,
                       tag: Optional[str] = None) -> List[Dict[str, Any]]:
        """Snapshots, oldest first, of one run and/or with one tag."""

    def delete_snapshots(self, run_id: str) -> int:
        """Drop every snapshot of a run (prune); how many."""


@runtime_checkable
class ArtifactStore(Protocol):
    """Content-addressed blobs (PRODUCT §9; AbstractRuntime's ArtifactStore).

    A ref is ``"sha256:" + hex``; the same bytes stored twice are one blob (the
    metadata — content type, runs, tags — is merged). Metadata is a dict ``{ref, size,
    content_type, name, run_ids, tags, created_at}``."""

    def put_artifact(self, data: bytes, *, content_type: str = "application/octet-stream",
                     run_id: Optional[str] = None, tags: Sequence[str] = (),
                     name: Optional[str] = None) -> Dict[str, Any]:
        """Store the bytes (durably) and return the metadata."""

    def get_artifact(self, ref: str) -> bytes:
        """The exact bytes (checked against the ref); ArtifactNotFoundError if none."""

    def artifact_meta(self, ref: str) -> Optional[Dict[str, Any]]:
        """The metadata, or None."""

    def list_artifacts(self, *, run_id: Optional[str] = None,
                       tag: Optional[str] = None) -> List[Dict[str, Any]]:
        """Metadata, oldest first, of one run and/or with one tag."""

    def delete_artifact(self, ref: str) -> None:
        """Drop a blob and its metadata (prune, when no kept run references it)."""


@runtime_checkable
class AuditStore(Protocol):
    """What stays when runs go, and who is working: prune records, worker heartbeats."""

    def put_prune_record(self, record: Dict[str, Any]) -> None:
        """``{run_id, workflow_id, status, ledger_count, ledger_head, pruned_at, actor_id}``."""

    def list_prune_records(self) -> List[Dict[str, Any]]:
        """Every prune record, oldest first."""

    def beat(self, heartbeat: Dict[str, Any]) -> None:
        """``{worker_id, host, pid, interval, beat_at, started_at, rounds, moved}``:
        replaces that worker's previous heartbeat."""

    def heartbeats(self) -> List[Dict[str, Any]]:
        """The last heartbeat of every worker."""


@runtime_checkable
class LogStore(Protocol):
    """What node code printed or logged, per run, with the step it came from; only the
    last ``LOG_CAP`` bytes per run are kept."""

    def append_log(self, run_id: str, entries: Sequence[Dict[str, Any]]) -> None:
        """``[{at, node_id, effect_seq, stream, text}]``, appended in order."""

    def read_log(self, run_id: str) -> Tuple[List[Dict[str, Any]], int]:
        """(the entries kept, oldest first; how many bytes were dropped before them)."""

    def delete_log(self, run_id: str) -> None:
        """Drop a run's log (prune)."""


LOG_CAP = 1 << 20  # 1 MiB of log text per run


@runtime_checkable
class RunAdmin(Protocol):
    """What export, prune, copy and doctor need beyond the kernel's protocols."""

    def iter_run_ids(self) -> Iterator[str]:
        """Every run id kept (for whole-store operations only, never on a hot path)."""

    def delete_run(self, run_id: str) -> None:
        """Remove a run and its ledger (prune). Its lock must be held by the caller."""


@runtime_checkable
class CommitStore(Protocol):
    """A run store that can append records and checkpoint in one transaction."""

    def commit(self, records: Sequence[StepRecord], run: Optional[RunState]) -> List[Dict[str, Any]]:
        """Chain and append ``records``; if ``run`` is given, set its ``ledger_count`` /
        ``ledger_head`` to the new head and save it, all or nothing."""


@dataclass(init=False, repr=False, eq=False)
class Stores(Plain):
    """One store, as the commands see it: its run store (also its queries), its ledger.

    ``kind`` is ``"files"``, ``"memory"`` or ``"postgresql"``; ``location`` a path or a
    URL with the password removed; ``capabilities`` what the store can do beyond the
    protocols above (the contract suite skips what a store lacks, and a command asking
    for a missing one gets a clear error instead of a silent no-op).
    """

    runs: Any
    ledger: Any
    kind: str
    location: str
    capabilities: FrozenSet[str] = field(default_factory=frozenset)
    events: Any = None  # an EventStore (None: this store keeps no events)
    snapshots: Any = None  # a SnapshotStore
    artifacts: Any = None  # an ArtifactStore
    audit: Any = None  # an AuditStore (prune records, worker heartbeats)
    logs: Any = None  # a LogStore

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        runs: Any,
        ledger: Any,
        kind: str,
        location: str,
        capabilities: FrozenSet[str] = FACTORY,
        events: Any = None,
        snapshots: Any = None,
        artifacts: Any = None,
        audit: Any = None,
        logs: Any = None,
    ) -> None:
        self.runs = runs
        self.ledger = ledger
        self.kind = kind
        self.location = location
        self.capabilities = frozenset() if capabilities is FACTORY else capabilities
        self.events = events
        self.snapshots = snapshots
        self.artifacts = artifacts
        self.audit = audit
        self.logs = logs
    # --- end of the written-out __init__ ---

    def need(self, part: str) -> Any:
        """The named part (``snapshots``, ``artifacts``...), or a clear error saying this
        store lacks it (never a silent no-op)."""
        value = getattr(self, part, None)
        if value is None:
            from ..errors import StoreCapabilityError

            raise StoreCapabilityError(f"the {self.kind} store at {self.location} keeps no {part}")
        return value

    def info(self) -> Dict[str, Any]:
        """What ``store info`` prints: kind, location, format version, runs by status."""
        fn = getattr(self.runs, "info", None)
        extra = fn() if fn is not None else {}
        return {"store": self.kind, "location": self.location, **extra}

    def reindex(self) -> Dict[str, Any]:
        """Rebuild whatever query index the store keeps; stores without one say so."""
        fn = getattr(self.runs, "rebuild_index", None)
        if fn is None:
            return {"store": self.kind, "reindexed": False, "why": "this store keeps no separate index"}
        return fn()

    def wake(self, run_id: str = "") -> None:
        """Tell waiting workers that something can move (PostgreSQL: NOTIFY; files: the
        data dir's wake file). Only a hint: workers also poll, the tables are the truth."""
        fn = getattr(self.runs, "wake", None)
        if fn is not None:
            fn(run_id)

    def listen(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a wake-up; True if one came."""
        fn = getattr(self.runs, "listen", None)
        if fn is None:
            import time

            time.sleep(max(timeout, 0.0))
            return False
        return bool(fn(timeout))

    def close(self) -> None:
        seen = set()
        for part in (self.runs, self.ledger, self.events, self.snapshots, self.artifacts,
                     self.audit, self.logs):
            if part is None or id(part) in seen:
                continue
            seen.add(id(part))
            fn = getattr(part, "close", None)
            if fn is not None:
                fn()
