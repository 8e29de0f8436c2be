"""The event mailbox of the file store (PRODUCT §8): one file per kept event.

Layout::

    events/<a>/<event_id>.json    the event (KeptEvent JSON without its receipts), written
                                  once, atomically; ``<a>`` is the id's first character
    events/<a>/<event_id>.recv    its receipts: one JSON line ``{"run_id": ...}`` per run
                                  that received it, appended (``lines.py``)

The files are the truth; two tables of the query index (``index.py``) say which files to
read: ``events`` (key, emission and expiry time) and ``event_receipts``. So
``oldest_unreceived`` is one range of the index on (key, emitted) that skips, by primary
key, the events the run has a receipt row for, then one read of the event it finds: its
cost grows with the events kept for that key, never with the others.

Why receipts are appended, not written into the event file: runs in several processes
receive the same event at once, and a read-modify-write of one file would lose one of
two receipts unless every receiver took a lock. An ``O_APPEND`` line loses none.

Order of writes, and what a crash leaves:

- ``put``: the receipts file (if the event comes with receipts, ``store copy``), the
  event file, then its row (durable). A crash before the row leaves a file no query sees
  until the index is rebuilt: like any operation, a crashed ``emit`` may or may not have
  kept its event; a returned one has.
- ``mark_received``: the receipt line (durable), then its row (not durable). The rows
  are a subset of the file: a reader that finds an event whose receipts file names the
  run adds the missing row and takes the next event. So nothing is delivered twice to a
  run, and a receipt row never claims what the file does not say.
- ``prune``: the files, then the rows. A row whose file is gone is dropped by the reader
  that meets it.

An index rebuild (``rebuild.py``) reads every event file and receipts file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from datetime import datetime
from functools import partial
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from ...core.models import KeptEvent
from ...errors import PayloadError, StoreIOError
from .. import rules
from .atomic import create_new, lstat_at, read_file, refuse_symlink, unlink_at
from .ids import is_valid_run_id
from .index import RunIndex
from .layout import Layout
from .lines import append_lines, encode_line, parse_lines
from .oserrors import cannot_write, mapped

_LITERAL_PREFIX = re.compile(r"[^*?\[]*")


def check_event_id(event_id: Any) -> str:
    """Event ids are file names here: the same rule as run ids."""
    if not isinstance(event_id, str) or not is_valid_run_id(event_id):
        raise PayloadError(f"event id {event_id!r} cannot be kept: use 1-128 letters, digits, "
                           "'.', '_' or '-', starting with a letter or digit")
    return event_id


def shard_of(event_id: str) -> str:
    return "events/" + event_id[0]


class FileEventStore:
    """EventStore over files and the run store's index (see the module docstring)."""

    def __init__(self, runs: Any) -> None:
        self._runs = runs  # the FileRunStore whose index (and its upkeep) we share
        self._layout: Layout = runs._layout
        self._fsync: bool = runs._fsync

    def close(self) -> None:
        """(The index connection is the run store's: it closes it.)"""

    def path_of(self, event_id: str) -> str:
        return os.path.join(self._layout.root, shard_of(event_id), event_id + ".json")

    def _idx(self, fn: Any) -> Any:
        return self._runs._with_index(fn)

    def _repair(self, fn: Any) -> None:
        """A repair of the index (a missing receipt row, a row without a file): best effort
        where this process may not write."""
        try:
            self._idx(fn)
        except OSError as exc:
            if not cannot_write(exc):
                raise

    # ------------------------------------------------------------------ writes

    def put(self, event: KeptEvent) -> None:
        """Keep an event (its id is new: StoreIOError ``event_exists`` if not)."""
        eid = check_event_id(event.event_id)
        emitted_us = rules.timestamp_micros(event.emitted_at)
        expires_us = rules.timestamp_micros(event.expires_at)
        if emitted_us is None or expires_us is None:
            raise PayloadError(f"event {eid}: emitted_at and expires_at must be ISO-8601 times")
        body = event.to_jsonable()
        receipts = list(dict.fromkeys(body.pop("received_by") or []))
        try:
            data = encode_line(body)
            recv = [encode_line({"run_id": r}) for r in receipts]
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"event {eid}: {exc}") from None
        path = self.path_of(eid)

        def write(fd: int) -> None:
            refuse_symlink(lstat_at(fd, eid + ".recv"))
            st = lstat_at(fd, eid + ".json")
            refuse_symlink(st)
            if st is not None:
                raise _exists(path)
            # A receipts file without its event is left by a crash (or a prune racing a
            # receiver): it is not this event's.
            unlink_at(fd, eid + ".recv")
            if recv:
                append_lines(fd, eid + ".recv", recv, fsync=self._fsync)
            if not create_new(fd, eid + ".json", data, fsync=self._fsync):
                raise _exists(path)

        with mapped(path):
            self._layout.in_dir(shard_of(eid), write, create=True)
        self._idx(partial(RunIndex.put_event, event_id=eid, key=event.key,
                          emitted_us=emitted_us, expires_us=expires_us))
        if receipts:
            self._repair(partial(RunIndex.add_receipts, rows=[(eid, r) for r in receipts]))

    def mark_received(self, event_id: str, run_id: str) -> None:
        """Note that ``run_id`` received the event: durably, idempotent, safe from several
        processes at once (an appended line each). An event no longer kept: nothing."""
        eid = check_event_id(event_id)
        if not isinstance(run_id, str) or not run_id:
            raise PayloadError("a receipt names a run id")
        if self._idx(partial(RunIndex.has_receipt, event_id=eid, run_id=run_id)):
            return  # (rows are a subset of the receipts file: it is there)
        line = encode_line({"run_id": run_id})

        def add(fd: int) -> bool:
            if lstat_at(fd, eid + ".json") is None:
                return False
            append_lines(fd, eid + ".recv", [line], fsync=self._fsync)
            return True

        with mapped(self.path_of(eid)[:-5] + ".recv"):
            added = self._layout.in_dir(shard_of(eid), add, create=False)
        if added:
            self._repair(partial(RunIndex.add_receipts, rows=[(eid, run_id)]))

    def prune(self, *, now: datetime) -> int:
        """Drop the events expired at ``now`` (files first, then rows); how many."""
        now_us = rules.micros(now)
        expired = self._idx(partial(RunIndex.expired_events, now_us=now_us))
        for eid in expired:
            if not is_valid_run_id(eid):
                continue

            def drop(fd: int, eid: str = eid) -> None:
                unlink_at(fd, eid + ".json")
                unlink_at(fd, eid + ".recv")

            with mapped(self.path_of(eid)):
                self._layout.in_dir(shard_of(eid), drop, create=False)
        if expired:
            self._idx(partial(RunIndex.delete_events, event_ids=expired))
        return len(expired)

    # ------------------------------------------------------------------ reads

    def oldest_unreceived(self, key: str, *, run_id: str, emitted_after: datetime,
                          now: datetime, exclude: Sequence[str] = ()) -> Optional[KeptEvent]:
        """The oldest kept event for ``key`` emitted strictly after ``emitted_after``, not
        expired at ``now``, that ``run_id`` has not received and that is not excluded."""
        after_us, now_us = rules.micros(emitted_after), rules.micros(now)
        skip = set(exclude)
        page = len(skip) + 8
        cursor: Optional[Tuple[int, str]] = None
        while True:
            rows = self._idx(partial(RunIndex.event_page, key=key, run_id=run_id,
                                     emitted_after_us=after_us, now_us=now_us, after=cursor,
                                     limit=page))
            for eid, emitted_us in rows:
                cursor = (emitted_us, eid)
                if eid in skip:
                    continue
                ev = self._read(eid)
                if ev is None:
                    self._repair(partial(RunIndex.delete_event, event_id=eid))
                    continue
                if run_id in ev.received_by:
                    # Received, and the row was lost (a crash after the receipt line).
                    self._repair(partial(RunIndex.add_receipts, rows=[(eid, run_id)]))
                    continue
                return ev
            if len(rows) < page:
                return None

    def list_events(self, *, key_pattern: Optional[str] = None) -> List[KeptEvent]:
        """Kept events, oldest first; a pattern's literal prefix narrows the index range."""
        match = _LITERAL_PREFIX.match(key_pattern) if key_pattern else None
        prefix = match.group(0) if match is not None else None
        out = []
        for eid, key in self._idx(partial(RunIndex.event_rows, key_prefix=prefix)):
            if key_pattern is not None and not fnmatch.fnmatchcase(key, key_pattern):
                continue
            ev = self._read(eid)
            if ev is None:
                self._repair(partial(RunIndex.delete_event, event_id=eid))
                continue
            out.append(ev)
        return out

    def _read(self, eid: str) -> Optional[KeptEvent]:
        """The event with its receipts from its files; None if it is not kept (any more)."""
        if not is_valid_run_id(eid):
            return None
        path = self.path_of(eid)

        def read(fd: int) -> Optional[Tuple[bytes, Optional[bytes]]]:
            got = read_file(fd, eid + ".json")
            if got is None:
                return None
            recv = read_file(fd, eid + ".recv")
            return got[0], recv[0] if recv is not None else None

        with mapped(path):
            got = self._layout.in_dir(shard_of(eid), read, create=False)
        if got is None:
            return None
        return parse_event(path, *got)


def parse_event(path: str, data: bytes, recv: Optional[bytes]) -> KeptEvent:
    """An event from its file and its receipts file (StoreIOError ``corrupt_event``)."""
    try:
        body = json.loads(data)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        receipts: List[str] = []
        if recv is not None:
            lines, _torn = parse_lines(recv)
            receipts = list(dict.fromkeys(str(r["run_id"]) for r in lines
                                          if isinstance(r.get("run_id"), str)))
        ev = KeptEvent.from_dict(dict(body, received_by=receipts))
        if rules.timestamp_micros(ev.emitted_at) is None or \
                rules.timestamp_micros(ev.expires_at) is None:
            raise ValueError("emitted_at and expires_at must be ISO-8601 times")
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise StoreIOError(path, f"not a kept event: {exc}", code="corrupt_event") from None
    return ev


def _exists(path: str) -> StoreIOError:
    return StoreIOError(path, "an event with this id is kept already", code="event_exists")


def scan_event_files(layout: Layout, *, writable: bool
                     ) -> Iterator[Tuple[str, Optional[KeptEvent], Optional[str]]]:
    """(event id, the event or None, why not) of every event file: for an index rebuild.
    Temp files and receipts files without an event are not events; a receipts file
    without its event that is an hour old (a leftover, not a ``put`` under way, which
    writes the receipts first) is removed where we may write."""
    base = layout.dir_fd("events", create=False)
    if base is None:
        return
    with os.scandir(base) as shards:
        names = sorted(e.name for e in shards if e.is_dir(follow_symlinks=False)
                       and len(e.name) == 1)
    for shard_name in names:
        shard = layout.dir_fd("events/" + shard_name, create=False)
        if shard is None:
            continue
        with os.scandir(shard) as it:
            entries = sorted(e.name for e in it)
        present = set(entries)
        for name in entries:
            if name.startswith("."):
                continue
            if name.endswith(".recv"):
                if writable and name[:-5] + ".json" not in present:
                    st = lstat_at(shard, name)
                    if st is not None and time.time() - st.st_mtime > 3600:
                        unlink_at(shard, name)
                continue
            if not name.endswith(".json"):
                continue
            eid = name[:-5]
            if not is_valid_run_id(eid) or eid[0] != shard_name:
                continue
            path = os.path.join(layout.root, "events", shard_name, name)
            try:
                got = read_file(shard, name)
                if got is None:
                    continue
                recv = read_file(shard, eid + ".recv")
                yield eid, parse_event(path, got[0], recv[0] if recv else None), None
            except StoreIOError as exc:
                yield eid, None, exc.message
            except OSError as exc:
                yield eid, None, f"{path}: {exc.strerror or exc}"


def event_rows(events: List[KeptEvent]) -> List[Tuple[str, str, int, int]]:
    return [(e.event_id, e.key, rules.timestamp_micros(e.emitted_at) or 0,
             rules.timestamp_micros(e.expires_at) or 0) for e in events]


def receipt_rows(events: List[KeptEvent]) -> List[Tuple[str, str]]:
    return [(e.event_id, r) for e in events for r in e.received_by]


__all__ = ["FileEventStore", "scan_event_files", "check_event_id", "parse_event"]
