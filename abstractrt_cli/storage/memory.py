"""In-memory stores: for tests, benchmarks and library users who need no persistence.

``memory_stores()`` gives the whole bundle (``Stores``): runs, ledger, events, snapshots,
artifacts, audit, logs, with the run store linked to its ledger (``delete_run`` and
``import_run`` need both). Every part deep-copies what goes in and out, like a real
store; which items a list gives, and in which order, is ``rules.py``'s.
"""

from __future__ import annotations

import copy
import threading
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..core.models import RunState, RunStatus, StepRecord, WaitReason
from ..core.timeutil import parse_timestamp
from ..errors import (
    ArtifactNotFoundError,
    InvalidRunIdError,
    PayloadError,
    RunBusyError,
    SnapshotExistsError,
    StoreIOError,
)
from . import rules
from .base import LOG_CAP, OnCorrupt, Stores
from .chain import chain_record

#: What ``Stores.capabilities`` says of the memory stores (see ``FileRunStore``).
CAPABILITIES = frozenset({"events", "snapshots", "artifacts", "audit", "logs", "admin", "wake"})


class InMemoryRunStore:
    """Runs in a dict (deep-copied in and out, like a real store would).

    ``ledger``: the ledger store of the same runs, for ``delete_run`` and ``import_run``.
    """

    capabilities = CAPABILITIES

    def __init__(self, ledger: Optional["InMemoryLedgerStore"] = None) -> None:
        self._runs: Dict[str, RunState] = {}
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._owners: Dict[str, int] = {}  # run id -> the thread holding its lock
        self._ledger = ledger
        self._woken = threading.Event()

    def save(self, run: RunState) -> None:
        self._runs[self.validate_run_id(run.run_id)] = copy.deepcopy(run)

    def load(self, run_id: str) -> Optional[RunState]:
        run = self._runs.get(self.validate_run_id(run_id))
        return copy.deepcopy(run) if run is not None else None

    @contextmanager
    def lock(self, run_id: str, *, timeout: float) -> Iterator[None]:
        with self._guard:
            lk = self._locks.setdefault(run_id, threading.Lock())
        acquired = lk.acquire(timeout=timeout) if timeout > 0 else lk.acquire(blocking=False)
        if not acquired:
            raise RunBusyError(run_id)
        self._owners[run_id] = threading.get_ident()
        try:
            yield
        finally:
            self._owners.pop(run_id, None)
            lk.release()

    def validate_run_id(self, run_id: Any) -> str:
        """Any non-empty string without '/' or NUL (nothing here is a file name)."""
        if not isinstance(run_id, str):
            raise InvalidRunIdError(repr(run_id), "a run id is a string")
        if not run_id or "/" in run_id or "\0" in run_id:
            raise InvalidRunIdError(run_id, "a run id is a non-empty string without '/' or NUL")
        return run_id

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
        f = rules.RunFilter.of(status=status, workflow_id=workflow_id, wait_reason=wait_reason,
                               wait_key=wait_key, parent_run_id=parent_run_id,
                               created_since=created_since)
        if limit is not None and limit <= 0:
            return []
        out = sorted((r for r in list(self._runs.values()) if f.matches(r)),
                     key=rules.newest_first, reverse=True)
        return [copy.deepcopy(r) for r in out[:limit]]

    def list_due_wait_until(
        self, *, now: datetime, limit: Optional[int] = None, on_corrupt: OnCorrupt = None
    ) -> List[RunState]:
        if limit is not None and limit <= 0:
            return []
        now_dt = parse_timestamp(now)
        due = sorted((r for r in list(self._runs.values()) if rules.is_due(r, now_dt)),
                     key=rules.earliest_due_first)
        return [copy.deepcopy(r) for r in due[:limit]]

    def earliest_due(self) -> Optional[datetime]:
        dues = [d for d in map(rules.due_at, list(self._runs.values())) if d is not None]
        return min(dues) if dues else None

    def list_children(
        self, *, parent_run_id: str, status: Optional[RunStatus] = None
    ) -> List[RunState]:
        status = rules.as_status(status)
        kids = sorted((r for r in list(self._runs.values()) if r.parent_run_id == parent_run_id
                       and (status is None or r.status == status)), key=rules.oldest_first)
        return [copy.deepcopy(r) for r in kids]

    def info(self) -> Dict[str, Any]:
        """Runs by status (what ``store info`` shows)."""
        counts: Dict[str, int] = {}
        for run in list(self._runs.values()):
            counts[run.status.value] = counts.get(run.status.value, 0) + 1
        return {"runs": {k: counts[k] for k in sorted(counts)}, "total": len(self._runs)}

    def match_prefix(self, prefix: str, *, limit: int = 20) -> List[str]:
        return sorted(rid for rid in list(self._runs) if rid.startswith(prefix))[:limit]

    # ------------------------------------------------------------------ admin

    def iter_run_ids(self) -> Iterator[str]:
        yield from sorted(list(self._runs))

    def delete_run(self, run_id: str) -> None:
        """Remove a run and its ledger (the caller holds the run's lock)."""
        self._runs.pop(self.validate_run_id(run_id), None)
        if self._ledger is not None:
            self._ledger._records.pop(run_id, None)

    def import_run(self, run: RunState, records: Sequence[Dict[str, Any]]) -> None:
        """A new run with its (already chained) ledger records, as given; StoreIOError
        ``run_exists`` if the run or a ledger record of it exists."""
        rid = self.validate_run_id(run.run_id)
        if self._ledger is None:
            raise RuntimeError("import_run needs the run store's ledger (memory_stores())")
        for rec in records:
            if not isinstance(rec, dict) or rec.get("run_id") != rid:
                raise ValueError(f"import_run({rid}): a record of another run, or not a record")
        mine = self._owners.get(rid) == threading.get_ident()
        with nullcontext() if mine else self.lock(rid, timeout=10):
            if rid in self._runs or self._ledger._records.get(rid):
                raise StoreIOError(f"memory:{rid}", "this run exists already", code="run_exists")
            self._ledger._records[rid] = copy.deepcopy(list(records))
            self.save(run)

    # ------------------------------------------------------------------ wake-ups

    def wake(self, run_id: str = "") -> None:
        self._woken.set()

    def listen(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ``wake``; True if one came."""
        got = self._woken.wait(max(timeout, 0.0))
        self._woken.clear()
        return got


class InMemoryLedgerStore:
    """Hash-chained records in lists."""

    def __init__(self) -> None:
        self._records: Dict[str, List[Dict[str, Any]]] = {}

    def append(self, record: StepRecord) -> Dict[str, Any]:
        recs = self._records.setdefault(record.run_id, [])
        prev = recs[-1]["record_hash"] if recs else None
        stored = chain_record(record.to_jsonable(), seq=len(recs), prev_hash=prev)
        recs.append(stored)
        record.seq, record.prev_hash, record.record_hash = stored["seq"], prev, stored["record_hash"]
        return copy.deepcopy(stored)

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return copy.deepcopy(self._records.get(run_id, []))

    def head(self, run_id: str) -> Tuple[int, Optional[str]]:
        recs = self._records.get(run_id)
        return (len(recs), recs[-1]["record_hash"]) if recs else (0, None)

    def records_since(self, run_id: str, count: int) -> List[Dict[str, Any]]:
        return copy.deepcopy(self._records.get(run_id, [])[count:])


class InMemorySnapshotStore:
    """Snapshots by (run id, name)."""

    def __init__(self) -> None:
        self._snaps: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self._guard = threading.Lock()

    def put_snapshot(self, snapshot: Dict[str, Any]) -> None:
        snap = rules.check_snapshot(snapshot)
        key = (snap["run_id"], snap["name"])
        with self._guard:
            if key in self._snaps:
                raise SnapshotExistsError(*key)
            self._snaps[key] = snap

    def get_snapshot(self, run_id: str, name: str) -> Optional[Dict[str, Any]]:
        snap = self._snaps.get((run_id, name))
        return copy.deepcopy(snap) if snap is not None else None

    def list_snapshots(self, *, run_id: Optional[str] = None,
                       tag: Optional[str] = None) -> List[Dict[str, Any]]:
        with self._guard:
            out = [copy.deepcopy(s) for s in self._snaps.values()
                   if rules.snapshot_matches(s, run_id, tag)]
        return sorted(out, key=rules.snapshot_order)

    def delete_snapshots(self, run_id: str) -> int:
        with self._guard:
            keys = [k for k in self._snaps if k[0] == run_id]
            for k in keys:
                del self._snaps[k]
        return len(keys)


class InMemoryArtifactStore:
    """Blobs by ref, with their metadata."""

    def __init__(self) -> None:
        self._blobs: Dict[str, bytes] = {}
        self._meta: Dict[str, Dict[str, Any]] = {}
        self._guard = threading.Lock()

    def put_artifact(self, data: bytes, *, content_type: str = rules.DEFAULT_CONTENT_TYPE,
                     run_id: Optional[str] = None, tags: Sequence[str] = (),
                     name: Optional[str] = None) -> Dict[str, Any]:
        data = rules.artifact_bytes(data, content_type, run_id, tags, name)
        ref = rules.artifact_ref(data)
        with self._guard:
            old = self._meta.get(ref)
            if old is None:
                meta = rules.new_artifact_meta(
                    data, content_type=content_type, run_id=run_id, tags=tags, name=name,
                    created_at=datetime.now(timezone.utc).isoformat())
            else:
                meta = rules.merge_artifact_meta(old, content_type=content_type, run_id=run_id,
                                                 tags=tags, name=name)
            self._blobs[ref] = data
            self._meta[ref] = meta
            return copy.deepcopy(meta)

    def import_artifact(self, meta: Dict[str, Any], data: bytes) -> Dict[str, Any]:
        """Bytes with the metadata another store gave them (see the file store's)."""
        data = bytes(data)
        given = rules.imported_artifact_meta(meta, data)
        with self._guard:
            old = self._meta.get(given["ref"])
            new = given if old is None else rules.merge_imported_meta(old, given)
            self._blobs[given["ref"]] = data
            self._meta[given["ref"]] = new
            return copy.deepcopy(new)

    def get_artifact(self, ref: str) -> bytes:
        data = self._blobs.get(ref)
        if data is None:
            raise ArtifactNotFoundError(str(ref))
        return data

    def artifact_meta(self, ref: str) -> Optional[Dict[str, Any]]:
        meta = self._meta.get(ref)
        return copy.deepcopy(meta) if meta is not None else None

    def list_artifacts(self, *, run_id: Optional[str] = None,
                       tag: Optional[str] = None) -> List[Dict[str, Any]]:
        with self._guard:
            out = [copy.deepcopy(m) for m in self._meta.values()
                   if rules.artifact_matches(m, run_id, tag)]
        return sorted(out, key=rules.artifact_order)

    def delete_artifact(self, ref: str) -> None:
        with self._guard:
            self._meta.pop(ref, None)
            self._blobs.pop(ref, None)


class InMemoryAuditStore:
    """Prune records in a list, heartbeats by worker id."""

    def __init__(self) -> None:
        self._pruned: List[Dict[str, Any]] = []
        self._beats: Dict[str, Dict[str, Any]] = {}
        self._guard = threading.Lock()

    def put_prune_record(self, record: Dict[str, Any]) -> None:
        if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
            raise PayloadError("a prune record is an object with a run_id")
        with self._guard:
            self._pruned.append(copy.deepcopy(record))

    def list_prune_records(self) -> List[Dict[str, Any]]:
        with self._guard:
            return copy.deepcopy(self._pruned)

    def beat(self, heartbeat: Dict[str, Any]) -> None:
        if not isinstance(heartbeat, dict) or not isinstance(heartbeat.get("worker_id"), str) \
                or not heartbeat["worker_id"]:
            raise PayloadError("a heartbeat is an object with a worker_id")
        with self._guard:
            self._beats[heartbeat["worker_id"]] = copy.deepcopy(heartbeat)

    def heartbeats(self) -> List[Dict[str, Any]]:
        with self._guard:
            return [copy.deepcopy(self._beats[w]) for w in sorted(self._beats)]


class InMemoryLogStore:
    """Log entries per run, capped like every store's (``rules.cap_log``)."""

    def __init__(self, cap: int = LOG_CAP) -> None:
        self._logs: Dict[str, Tuple[List[Dict[str, Any]], int]] = {}
        self._guard = threading.Lock()
        self.cap = cap

    def append_log(self, run_id: str, entries: Sequence[Dict[str, Any]]) -> None:
        ents = rules.check_log_entries(entries)
        with self._guard:
            kept, dropped = self._logs.get(run_id, ([], 0))
            self._logs[run_id] = rules.cap_log(kept + ents, dropped, self.cap)

    def import_log(self, run_id: str, entries: Sequence[Dict[str, Any]], dropped: int) -> None:
        """A whole log with its dropped-bytes count; StoreIOError ``log_exists`` if there
        is one."""
        if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
            raise PayloadError("a log's dropped count is a number of bytes")
        ents = rules.check_log_entries(entries)
        with self._guard:
            if run_id in self._logs:
                raise StoreIOError(f"memory:{run_id}", f"run {run_id} has a log already",
                                   code="log_exists")
            self._logs[run_id] = rules.cap_log(ents, dropped, self.cap)

    def read_log(self, run_id: str) -> Tuple[List[Dict[str, Any]], int]:
        with self._guard:
            kept, dropped = self._logs.get(run_id, ([], 0))
            return copy.deepcopy(kept), dropped

    def delete_log(self, run_id: str) -> None:
        with self._guard:
            self._logs.pop(run_id, None)


def memory_stores(*, location: str = "memory") -> Stores:
    """A whole in-memory store, every part empty and linked."""
    from .memory_events import InMemoryEventStore

    ledger = InMemoryLedgerStore()
    return Stores(runs=InMemoryRunStore(ledger=ledger), ledger=ledger, kind="memory",
                  location=location, capabilities=CAPABILITIES, events=InMemoryEventStore(),
                  snapshots=InMemorySnapshotStore(), artifacts=InMemoryArtifactStore(),
                  audit=InMemoryAuditStore(), logs=InMemoryLogStore())


class EmptyPart:
    """A part of the stores of a data dir that does not exist (yet): every query finds
    nothing, and a write that would keep something is refused (StoreCapabilityError) —
    never accepted and silently lost with the process. Deletes find nothing to delete."""

    KEEPS = frozenset({"put", "put_snapshot", "put_artifact", "import_artifact",
                       "put_prune_record", "beat", "append_log", "import_log"})

    def __init__(self, part: Any, name: str, location: str) -> None:
        self._part = part
        self._name = name
        self._location = location

    def __getattr__(self, attr: str) -> Any:
        if attr in self.KEEPS:
            return self._refuse
        return getattr(self._part, attr)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        from ..errors import StoreCapabilityError

        raise StoreCapabilityError(f"{self._location} does not exist, and this command does "
                                   f"not create it: it keeps no {self._name}")


def empty_stores(*, kind: str, location: str) -> Stores:
    """What a query sees of a store that does not exist yet (``open_stores`` without
    ``create``): every part there and empty; writes to the parts refused (``EmptyPart``)."""
    stores = memory_stores(location=location)
    stores.kind = kind
    for name in ("events", "snapshots", "artifacts", "audit", "logs"):
        setattr(stores, name, EmptyPart(getattr(stores, name), name, location))
    return stores
