"""Run logs of the file store: what node code printed or logged, per run (PRODUCT §9).

Layout::

    logs/<a>/<run_id>.jsonl    one entry a line ``{at, node_id, effect_seq, stream, text}``;
                               after a compaction, a first line ``{"dropped": N, ...}``

Appends are ``O_APPEND`` lines (``lines.py``), not synced: a process that crashes loses
nothing it wrote (the lines are in the kernel's cache), a power loss may lose the last
ones — it is output, not state. Only the newest ``LOG_CAP`` bytes of text are kept
(``rules.cap_log``, the rule every store follows, applied on every read): when the file
has grown to twice what its last compaction left (at least ``2 * LOG_CAP`` bytes), the
append that grew it rewrites it atomically with only the entries the cap keeps and a
first line counting the bytes dropped. Appenders hold an ``flock`` on the file while
they append or compact, and check after taking it that the file is still the one the
path names (a compaction replaces it), so no entry is lost to a compaction.
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any, Dict, List, Sequence, Tuple

from ...errors import PayloadError, StoreIOError
from .. import rules
from ..base import LOG_CAP
from .atomic import atomic_write, create_new, lstat_at, read_file, refuse_symlink, unlink_at
from .ids import validate_run_id
from .layout import Layout
from .lines import append_to, encode_line, open_append, parse_lines
from .oserrors import mapped

_HEADER_PEEK = 256


class FileLogStore:
    """LogStore over files (see the module docstring)."""

    def __init__(self, layout: Layout, *, fsync: bool = True, cap: int = LOG_CAP) -> None:
        self._layout = layout
        self._fsync = fsync
        self.cap = cap

    def close(self) -> None:
        pass

    def path_of(self, run_id: str) -> str:
        rid = validate_run_id(run_id)
        return os.path.join(self._layout.root, "logs", rid[0], rid + ".jsonl")

    def append_log(self, run_id: str, entries: Sequence[Dict[str, Any]]) -> None:
        """Append entries in order (compacting the file when it has grown enough)."""
        rid = validate_run_id(run_id)
        ents = rules.check_log_entries(entries)
        if not ents:
            return
        try:
            lines = [encode_line(e) for e in ents]
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"log of run {rid}: {exc}") from None
        name = rid + ".jsonl"

        def append(dir_fd: int) -> None:
            while True:
                fd = open_append(dir_fd, name, fsync=self._fsync)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    st = lstat_at(dir_fd, name)
                    if st is None or st.st_ino != os.fstat(fd).st_ino:
                        continue  # compacted (replaced) while we waited: the new file
                    size = append_to(fd, lines, fsync=False)
                    if size > self._compact_at(fd):
                        self._compact(dir_fd, name, fd)
                    return
                finally:
                    os.close(fd)  # (releases the flock)

        with mapped(self.path_of(rid)):
            self._layout.in_dir("logs/" + rid[0], append, create=True)

    def import_log(self, run_id: str, entries: Sequence[Dict[str, Any]], dropped: int) -> None:
        """A run's whole log as another store kept it (``store copy``): its entries and
        its dropped-bytes count, written at once. StoreIOError ``log_exists`` if this run
        has a log here."""
        if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
            raise PayloadError("a log's dropped count is a number of bytes")
        rid = validate_run_id(run_id)
        kept, dropped = rules.cap_log(rules.check_log_entries(entries), dropped, self.cap)
        try:
            data = _compacted(kept, dropped)
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"log of run {rid}: {exc}") from None
        name = rid + ".jsonl"
        path = self.path_of(rid)

        def write(dir_fd: int) -> None:
            if not create_new(dir_fd, name, data, fsync=self._fsync):
                refuse_symlink(lstat_at(dir_fd, name))
                raise StoreIOError(path, f"run {rid} has a log already", code="log_exists")

        with mapped(path):
            self._layout.in_dir("logs/" + rid[0], write, create=True)

    def _compact_at(self, fd: int) -> int:
        floor = 2 * self.cap
        size = os.fstat(fd).st_size
        if size <= floor:
            return floor
        header = _header(os.pread(fd, _HEADER_PEEK, 0))
        return max(floor, 2 * int(header.get("size", 0)))

    def _compact(self, dir_fd: int, name: str, fd: int) -> None:
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        entries, dropped = _entries(data)
        kept, dropped = rules.cap_log(entries, dropped, self.cap)
        atomic_write(dir_fd, name, _compacted(kept, dropped), fsync=self._fsync)

    def read_log(self, run_id: str) -> Tuple[List[Dict[str, Any]], int]:
        """(the entries kept, oldest first; how many bytes of text were dropped before)."""
        rid = validate_run_id(run_id)
        with mapped(self.path_of(rid)):
            got = self._layout.in_dir("logs/" + rid[0], lambda fd: read_file(fd, rid + ".jsonl"),
                                      create=False)
        if got is None:
            return [], 0
        entries, dropped = _entries(got[0])
        return rules.cap_log(entries, dropped, self.cap)

    def delete_log(self, run_id: str) -> None:
        rid = validate_run_id(run_id)
        with mapped(self.path_of(rid)):
            self._layout.in_dir("logs/" + rid[0], lambda fd: unlink_at(fd, rid + ".jsonl"),
                                create=False)


def _compacted(kept: List[Dict[str, Any]], dropped: int) -> bytes:
    """A log file holding only ``kept``, after a first line counting what was dropped."""
    body = b"".join(encode_line(e) for e in kept)
    head = {"dropped": dropped, "size": 0}
    # The size this file has: its entries, and its own line with room for the digits of
    # this number (the next compaction is due at twice that).
    head["size"] = len(body) + len(encode_line(head)) + 20
    return encode_line(head) + body


def _header(data: bytes) -> Dict[str, Any]:
    line = data.split(b"\n", 1)[0]
    try:
        obj = json.loads(line)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) and "text" not in obj else {}


def _entries(data: bytes) -> Tuple[List[Dict[str, Any]], int]:
    objs, _torn = parse_lines(data)
    entries: List[Dict[str, Any]] = []
    dropped = 0
    for obj in objs:
        if isinstance(obj.get("text"), str):
            entries.append(obj)
        elif isinstance(obj.get("dropped"), int):
            dropped += obj["dropped"]
    return entries, dropped
