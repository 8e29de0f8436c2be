"""AbstractRuntime's snapshots: named, tagged copies of a run's state.

A snapshot keeps the run's JSON form as it was (``RunState.to_jsonable()``), which in
abstractrt includes the ledger's record count and head hash at that moment
(``ledger_count``, ``ledger_head``): a snapshot says exactly which history it belongs
to. ``Snapshot.run()`` gives the state back as a ``RunState``.

abstractrt's own snapshot store (PRODUCT §9: ``abstractrt snapshot``, names unique per
run, forks from a snapshot) belongs to the run-lifecycle work and does not exist yet;
these stores are small and self-contained, and are to be re-based on it once it does.
``JsonSnapshotStore`` writes one file per snapshot atomically (0600, in a 0700
directory) and refuses an unreadable file instead of skipping it.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from ....core.models import RunState, utc_now_iso
from ....storage.rules import timestamp_micros
from .._errors import CorruptSnapshotError, InvalidSnapshotIdError
from ._files import PrivateDir

__all__ = ["Snapshot", "SnapshotStore", "InMemorySnapshotStore", "JsonSnapshotStore", "utc_now_iso"]

_SNAPSHOT_ID = re.compile(r"^[A-Za-z0-9_-]+$")

OnCorrupt = Optional[Callable[[CorruptSnapshotError], None]]


def _run_json(run: Any) -> Dict[str, Any]:
    to_json = getattr(run, "to_jsonable", None)
    return json.loads(json.dumps(to_json() if to_json is not None else asdict(run), default=str))


@dataclass
class Snapshot:
    snapshot_id: str
    run_id: str
    step_id: Optional[str] = None
    name: str = ""
    description: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    created_at: str = field(default_factory=utc_now_iso)
    updated_at: str = field(default_factory=utc_now_iso)
    run_state: Dict[str, Any] = field(default_factory=dict)  # the run's JSON form

    @classmethod
    def from_run(cls, *, run: RunState, name: str, description: Optional[str] = None,
                 tags: Optional[List[str]] = None, step_id: Optional[str] = None) -> "Snapshot":
        return cls(snapshot_id=str(uuid.uuid4()), run_id=run.run_id, step_id=step_id, name=name,
                   description=description, tags=list(tags or []), run_state=_run_json(run))

    def run(self) -> RunState:
        """The run as it was when the snapshot was taken."""
        return RunState.from_dict(self.run_state)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Snapshot":
        now = utc_now_iso()
        return cls(snapshot_id=data["snapshot_id"], run_id=data["run_id"],
                   step_id=data.get("step_id"), name=data.get("name") or "",
                   description=data.get("description"), tags=list(data.get("tags") or []),
                   created_at=data.get("created_at") or now, updated_at=data.get("updated_at") or now,
                   run_state=dict(data.get("run_state") or {}))


def _copy(snapshot: Snapshot) -> Snapshot:
    return Snapshot.from_dict(json.loads(json.dumps(snapshot.to_dict())))


def _check_id(snapshot_id: str) -> str:
    if not isinstance(snapshot_id, str) or not _SNAPSHOT_ID.match(snapshot_id):
        raise InvalidSnapshotIdError(str(snapshot_id))
    return snapshot_id


class SnapshotStore(ABC):
    @abstractmethod
    def save(self, snapshot: Snapshot) -> None: ...

    @abstractmethod
    def load(self, snapshot_id: str) -> Optional[Snapshot]: ...

    @abstractmethod
    def delete(self, snapshot_id: str) -> bool: ...

    @abstractmethod
    def list(self, *, run_id: Optional[str] = None, tag: Optional[str] = None,
             query: Optional[str] = None, limit: int = 100) -> List[Snapshot]:
        """Snapshots of a run, with a tag (any case), or whose name or description contains
        ``query`` (any case); newest first."""


def _select(snaps: List[Snapshot], *, run_id: Optional[str], tag: Optional[str],
            query: Optional[str], limit: int) -> List[Snapshot]:
    if run_id:
        snaps = [s for s in snaps if s.run_id == run_id]
    if tag:
        t = tag.lower()
        snaps = [s for s in snaps if any(x.lower() == t for x in s.tags or [])]
    if query:
        q = query.lower()
        snaps = [s for s in snaps if q in (s.name or "").lower() or q in (s.description or "").lower()]
    snaps.sort(key=lambda s: (timestamp_micros(s.created_at) or 0, s.snapshot_id), reverse=True)
    return snaps[:max(0, int(limit))]


class InMemorySnapshotStore(SnapshotStore):
    def __init__(self) -> None:
        self._snaps: Dict[str, Snapshot] = {}
        self._guard = threading.Lock()

    def save(self, snapshot: Snapshot) -> None:
        _check_id(snapshot.snapshot_id)
        snapshot.updated_at = utc_now_iso()
        with self._guard:
            self._snaps[snapshot.snapshot_id] = _copy(snapshot)

    def load(self, snapshot_id: str) -> Optional[Snapshot]:
        got = self._snaps.get(_check_id(snapshot_id))
        return _copy(got) if got is not None else None

    def delete(self, snapshot_id: str) -> bool:
        with self._guard:
            return self._snaps.pop(_check_id(snapshot_id), None) is not None

    def list(self, *, run_id: Optional[str] = None, tag: Optional[str] = None,
             query: Optional[str] = None, limit: int = 100) -> List[Snapshot]:
        with self._guard:
            snaps = [_copy(s) for s in self._snaps.values()]
        return _select(snaps, run_id=run_id, tag=tag, query=query, limit=limit)


class JsonSnapshotStore(SnapshotStore):
    """One JSON file per snapshot: ``base_dir/snapshot_<id>.json``."""

    def __init__(self, base_dir: Union[str, Path], *, fsync: bool = True) -> None:
        self._dir = PrivateDir(str(base_dir), fsync=fsync)

    @property
    def path(self) -> str:
        return self._dir.path

    def close(self) -> None:
        self._dir.close()

    @staticmethod
    def _name(snapshot_id: str) -> str:
        return f"snapshot_{_check_id(snapshot_id)}.json"

    def save(self, snapshot: Snapshot) -> None:
        name = self._name(snapshot.snapshot_id)
        snapshot.updated_at = utc_now_iso()
        doc = json.dumps(snapshot.to_dict(), ensure_ascii=False, indent=2) + "\n"
        self._dir.write(name, doc.encode("utf-8"))

    def _read(self, name: str) -> Optional[Snapshot]:
        raw = self._dir.read(name)
        if raw is None:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("snapshot_id"), str) \
                    or not isinstance(data.get("run_id"), str):
                raise ValueError("not a snapshot (no snapshot_id or run_id)")
            return Snapshot.from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptSnapshotError(f"{self._dir.path}/{name}", str(exc)) from None

    def load(self, snapshot_id: str) -> Optional[Snapshot]:
        return self._read(self._name(snapshot_id))

    def delete(self, snapshot_id: str) -> bool:
        return self._dir.remove(self._name(snapshot_id))

    def list(self, *, run_id: Optional[str] = None, tag: Optional[str] = None,
             query: Optional[str] = None, limit: int = 100,
             on_corrupt: OnCorrupt = None) -> List[Snapshot]:
        """As ``SnapshotStore.list``. An unreadable snapshot file raises
        ``CorruptSnapshotError``, unless ``on_corrupt`` is given: then it gets the error
        and the listing goes on."""
        snaps = []
        for name in self._dir.names(".json"):
            if not name.startswith("snapshot_"):
                continue
            try:
                snap = self._read(name)
            except CorruptSnapshotError as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(exc)
                continue
            if snap is not None:
                snaps.append(snap)
        return _select(snaps, run_id=run_id, tag=tag, query=query, limit=limit)
