"""The rules every store's queries follow, written once.

A store may find its candidates however it likes (a dict scan, an index, SQL), but which
runs a query returns, and in which order, is decided here:

- ``RunFilter.matches``: the ``list_runs`` filter. ``wait_reason`` and ``wait_key``
  also mean "waiting" (a finished run keeps no wait); ``created_since`` is inclusive.
- ``due_at`` / ``is_due``: a waiting run is due at ``waiting.until`` (reason ``until``)
  or at ``waiting.deadline`` (reason ``user`` or ``event``, when it has one): a real
  instant, whatever its zone, at or before ``now``.
- ``newest_first`` / ``earliest_due_first``: the sort keys, ties broken by run id so
  every store gives the same order.
- Artifacts, snapshots, logs: refs and their merge rule, the orders of the lists, what
  a snapshot and a log entry must be, and the log cap (``cap_log``), so that every store
  keeps and drops the same things.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..core.dc import Frozen
from ..core.models import RunState, RunStatus, WaitReason
from ..core.timeutil import parse_timestamp
from .base import LOG_CAP

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The wait reasons whose ``deadline`` makes a run due (PRODUCT §8).
DEADLINE_REASONS = frozenset({WaitReason.USER, WaitReason.EVENT})
_MICRO = timedelta(microseconds=1)


def micros(dt: datetime) -> int:
    """Microseconds since the epoch of an aware (or UTC-naive) datetime."""
    return (parse_timestamp(dt) - EPOCH) // _MICRO


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def timestamp_micros(value: Any) -> Optional[int]:
    """``micros`` of an ISO-8601 string or datetime; None if it is not one."""
    try:
        return micros(parse_timestamp(value))
    except (ValueError, TypeError, OverflowError):
        return None


def created_micros(run: RunState) -> int:
    """When a run was created; an unreadable ``created_at`` sorts as the oldest."""
    us = timestamp_micros(run.created_at)
    return us if us is not None else 0


def as_status(value: Any) -> Optional[RunStatus]:
    """A RunStatus from itself or its value; None stays None (ValueError if unknown)."""
    return None if value is None else RunStatus(getattr(value, "value", value))


def as_reason(value: Any) -> Optional[WaitReason]:
    return None if value is None else WaitReason(getattr(value, "value", value))


@dataclass(init=False, repr=False, eq=False)
class RunFilter(Frozen):
    """What ``list_runs`` asks for (every field None: every run)."""

    status: Optional[RunStatus] = None
    workflow_id: Optional[str] = None
    wait_reason: Optional[WaitReason] = None
    wait_key: Optional[str] = None
    parent_run_id: Optional[str] = None
    created_since: Optional[datetime] = None

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (frozen) ---
    def __init__(
        self,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        wait_reason: Optional[WaitReason] = None,
        wait_key: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        created_since: Optional[datetime] = None,
    ) -> None:
        object.__setattr__(self, 'status', status)
        object.__setattr__(self, 'workflow_id', workflow_id)
        object.__setattr__(self, 'wait_reason', wait_reason)
        object.__setattr__(self, 'wait_key', wait_key)
        object.__setattr__(self, 'parent_run_id', parent_run_id)
        object.__setattr__(self, 'created_since', created_since)
    # --- end of the written-out __init__ ---

    @classmethod
    def of(cls, *, status: Any = None, workflow_id: Optional[str] = None,
           wait_reason: Any = None, wait_key: Optional[str] = None,
           parent_run_id: Optional[str] = None, created_since: Any = None) -> "RunFilter":
        """Normalised: enums from their values, ``created_since`` an aware datetime."""
        since = parse_timestamp(created_since) if created_since is not None else None
        return cls(as_status(status), workflow_id, as_reason(wait_reason), wait_key,
                   parent_run_id, since)

    @property
    def created_since_us(self) -> Optional[int]:
        return micros(self.created_since) if self.created_since is not None else None

    def matches(self, run: RunState) -> bool:
        if self.status is not None and run.status != self.status:
            return False
        if self.workflow_id is not None and run.workflow_id != self.workflow_id:
            return False
        if self.parent_run_id is not None and run.parent_run_id != self.parent_run_id:
            return False
        if self.wait_reason is not None or self.wait_key is not None:
            w = run.waiting
            if run.status != RunStatus.WAITING or w is None:
                return False
            if self.wait_reason is not None and w.reason != self.wait_reason:
                return False
            if self.wait_key is not None and w.wait_key != self.wait_key:
                return False
        if self.created_since is not None:
            created = timestamp_micros(run.created_at)
            if created is None or created < micros(self.created_since):
                return False
        return True


def due_at(run: RunState) -> Optional[datetime]:
    """The instant a waiting run becomes due: its ``until`` (a timer, a deferred retry) or
    the ``deadline`` of a person's or an event's wait; None for every other run."""
    w = run.waiting
    if run.status != RunStatus.WAITING or w is None:
        return None
    if w.reason == WaitReason.UNTIL:
        when = w.until
    elif w.reason in DEADLINE_REASONS:
        when = w.deadline
    else:
        return None
    if not when:
        return None
    try:
        return parse_timestamp(when)
    except ValueError:
        return None


def due_kind(run: RunState) -> Optional[str]:
    """``"until"`` or ``"deadline"``: which of its times ``due_at`` gives (None if none)."""
    if due_at(run) is None:
        return None
    return "until" if run.waiting is not None and run.waiting.reason == WaitReason.UNTIL \
        else "deadline"


def is_due(run: RunState, now: datetime) -> bool:
    due = due_at(run)
    return due is not None and due <= now


def newest_first(run: RunState) -> Tuple[int, str]:
    """Sort key for ``list_runs`` (use with ``reverse=True``)."""
    return created_micros(run), run.run_id


def oldest_first(run: RunState) -> Tuple[int, str]:
    """Sort key for ``list_children``."""
    return created_micros(run), run.run_id


def earliest_due_first(run: RunState) -> Tuple[datetime, str]:
    """Sort key for ``list_due_wait_until`` (due runs only)."""
    return due_at(run) or EPOCH, run.run_id


# ---------------------------------------------------------------------- artifacts

ARTIFACT_REF = re.compile(r"sha256:[0-9a-f]{64}")
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def artifact_ref(data: bytes) -> str:
    """The ref of these bytes: ``"sha256:"`` + their lowercase hex SHA-256."""
    import hashlib  # (OpenSSL's is the fastest for big artifacts; only loaded for them)

    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_artifact_ref(ref: Any) -> bool:
    return isinstance(ref, str) and ARTIFACT_REF.fullmatch(ref) is not None


def refs_in(value: Any) -> Set[str]:
    """Every artifact ref that appears anywhere in a JSON value (vars, records, snapshots):
    what prune and export treat as "this run references it"."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return set(ARTIFACT_REF.findall(text))


def new_artifact_meta(data: bytes, *, content_type: str, run_id: Optional[str],
                      tags: Sequence[str], name: Optional[str], created_at: str) -> Dict[str, Any]:
    """The metadata of bytes stored for the first time."""
    return {"ref": artifact_ref(data), "size": len(data), "content_type": content_type,
            "name": name, "run_ids": [run_id] if run_id else [],
            "tags": list(dict.fromkeys(str(t) for t in tags)), "created_at": created_at}


def merge_artifact_meta(old: Dict[str, Any], *, content_type: str, run_id: Optional[str],
                        tags: Sequence[str], name: Optional[str]) -> Dict[str, Any]:
    """The same bytes stored again: runs and tags are added (in order, once each); the
    first name stays; a specific content type replaces the default one, never another."""
    meta = dict(old)
    if meta.get("content_type") in (None, DEFAULT_CONTENT_TYPE):
        meta["content_type"] = content_type
    if not meta.get("name") and name:
        meta["name"] = name
    run_ids = list(meta.get("run_ids") or [])
    if run_id and run_id not in run_ids:
        run_ids.append(run_id)
    meta["run_ids"] = run_ids
    meta["tags"] = list(dict.fromkeys([*(meta.get("tags") or []), *(str(t) for t in tags)]))
    return meta


def imported_artifact_meta(meta: Any, data: bytes) -> Dict[str, Any]:
    """The metadata another store gave these bytes (``store copy``, import), checked:
    kept as given where it is new here (its ``created_at`` too, or now if it has none).
    PayloadError if it is not these bytes' metadata."""
    from ..errors import PayloadError

    ref = artifact_ref(data)
    if not isinstance(meta, dict) or meta.get("ref") != ref:
        got = meta.get("ref") if isinstance(meta, dict) else meta
        raise PayloadError(f"artifact {got}: the bytes given are {ref}")
    content_type = meta.get("content_type") or DEFAULT_CONTENT_TYPE
    run_ids = list(meta.get("run_ids") or [])
    tags = list(meta.get("tags") or [])
    name = meta.get("name")
    check_artifact_args(content_type, None, tags, name)
    if not all(isinstance(r, str) and r for r in run_ids):
        raise PayloadError(f"artifact {ref}: its run ids are strings")
    created_at = meta.get("created_at")
    if not isinstance(created_at, str) or timestamp_micros(created_at) is None:
        created_at = datetime.now(timezone.utc).isoformat()
    return {"ref": ref, "size": len(data), "content_type": content_type, "name": name,
            "run_ids": list(dict.fromkeys(run_ids)), "tags": list(dict.fromkeys(tags)),
            "created_at": created_at}


def merge_imported_meta(old: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """Imported metadata for bytes kept here already: merged as puts would merge it (every
    run and tag added, the time they have here kept)."""
    meta = merge_artifact_meta(old, content_type=new["content_type"], run_id=None,
                               tags=new["tags"], name=new["name"])
    for rid in new["run_ids"]:
        meta = merge_artifact_meta(meta, content_type=new["content_type"], run_id=rid, tags=(),
                                   name=None)
    return meta


def artifact_bytes(data: Any, content_type: Any, run_id: Any, tags: Any, name: Any) -> bytes:
    """``put_artifact``'s arguments checked (``check_artifact_args``), and its bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("an artifact is bytes")
    check_artifact_args(content_type, run_id, tags, name)
    return bytes(data)


def check_artifact_args(content_type: Any, run_id: Any, tags: Any, name: Any) -> None:
    """``put_artifact``'s arguments, refused with a clear error before anything is stored."""
    from ..errors import PayloadError

    if not isinstance(content_type, str) or not content_type:
        raise PayloadError("an artifact's content type is a non-empty string")
    if run_id is not None and not isinstance(run_id, str):
        raise PayloadError("an artifact's run id is a string")
    if isinstance(tags, (str, bytes)) or not all(isinstance(t, str) for t in tags):
        raise PayloadError("an artifact's tags are a list of strings")
    if name is not None and not isinstance(name, str):
        raise PayloadError("an artifact's name is a string")


def artifact_order(meta: Dict[str, Any]) -> Tuple[int, str]:
    """Sort key for ``list_artifacts`` (oldest first)."""
    return timestamp_micros(meta.get("created_at")) or 0, str(meta.get("ref"))


def artifact_matches(meta: Dict[str, Any], run_id: Optional[str], tag: Optional[str]) -> bool:
    return ((run_id is None or run_id in (meta.get("run_ids") or []))
            and (tag is None or tag in (meta.get("tags") or [])))


# ---------------------------------------------------------------------- snapshots

def check_snapshot(snapshot: Any) -> Dict[str, Any]:
    """A snapshot as ``put_snapshot`` takes it: ``run_id`` and ``name`` non-empty strings,
    ``state`` a run's JSON, ``tags`` a list of strings (default none). Returned as a copy
    with ``tags`` filled in; PayloadError naming what is wrong."""
    from ..errors import PayloadError

    if not isinstance(snapshot, dict):
        raise PayloadError("a snapshot is a JSON object")
    for name in ("run_id", "name"):
        if not isinstance(snapshot.get(name), str) or not snapshot[name]:
            raise PayloadError(f"a snapshot's {name} is a non-empty string")
    if not isinstance(snapshot.get("state"), dict):
        raise PayloadError("a snapshot's state is a run's JSON object")
    tags = snapshot.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise PayloadError("a snapshot's tags are a list of strings")
    out = json.loads(json.dumps(snapshot, ensure_ascii=False, allow_nan=False))
    out["tags"] = tags
    return out


def snapshot_order(snapshot: Dict[str, Any]) -> Tuple[int, str, str]:
    """Sort key for ``list_snapshots`` (oldest first)."""
    return (timestamp_micros(snapshot.get("created_at")) or 0, str(snapshot.get("run_id")),
            str(snapshot.get("name")))


def snapshot_matches(snapshot: Dict[str, Any], run_id: Optional[str], tag: Optional[str]) -> bool:
    return ((run_id is None or snapshot.get("run_id") == run_id)
            and (tag is None or tag in (snapshot.get("tags") or [])))


# ---------------------------------------------------------------------- logs

def check_log_entries(entries: Any) -> List[Dict[str, Any]]:
    """``append_log``'s entries: JSON objects with a string ``text`` (copied)."""
    from ..errors import PayloadError

    if isinstance(entries, dict) or not isinstance(entries, (list, tuple)):
        raise PayloadError("log entries are a list of objects")
    out = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("text"), str):
            raise PayloadError("a log entry is an object with a string 'text'")
        out.append(json.loads(json.dumps(e, ensure_ascii=False, default=str)))
    return out


def cap_log(entries: List[Dict[str, Any]], dropped: int = 0,
            cap: int = LOG_CAP) -> Tuple[List[Dict[str, Any]], int]:
    """The newest entries whose text adds up to at most ``cap`` bytes (UTF-8), and how
    many bytes of text were dropped in all (``dropped`` so far, plus these). An entry
    larger than the cap on its own keeps its last ``cap`` bytes."""
    kept: List[Dict[str, Any]] = []
    total = 0
    for i in range(len(entries) - 1, -1, -1):
        e = entries[i]
        size = len(e["text"].encode("utf-8"))
        if total + size <= cap:
            kept.append(e)
            total += size
            continue
        if not kept:  # the newest entry alone is over the cap: keep its end
            raw = e["text"].encode("utf-8")[-cap:]
            text = raw.decode("utf-8", "ignore")  # (a character cut in two is dropped)
            kept.append(dict(e, text=text))
            dropped += size - len(text.encode("utf-8"))
            i -= 1
        dropped += sum(len(x["text"].encode("utf-8")) for x in entries[:i + 1])
        break
    kept.reverse()
    return kept, dropped
