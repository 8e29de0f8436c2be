"""The file ledger store: one hash-chained JSONL file per run, beside its run file.

``append`` writes one whole line (``O_APPEND``) and fdatasyncs it before returning.
Readers ignore a torn last line (no newline, or unparsable); the next append first
truncates it so a record is never glued onto half of another. An unparsable line that
is not the last is ``CorruptLedgerError`` naming the line.

Head recovery. Every record carries its ``seq``, so the head of a ledger — (count, hash
of the last record) — is in its last line. Each store caches, per run, the head, the
ledger file's (inode, size) and the last few raw lines. ``head``/``records_since`` trust
that cache only if one ``stat`` shows the file unchanged (another process appending to
the run changes the size); otherwise, and in a fresh process, they read the file
*backwards* in chunks from its end until they reach a record with ``seq`` below what is
asked for. So both cost O(records asked for), never O(ledger length).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple, Sequence

from ...core.models import StepRecord
from ...errors import CorruptLedgerError
from ..chain import chain_record
from . import locks
from .atomic import (
    FILE_MODE,
    O_CLOEXEC,
    O_NOFOLLOW,
    data_sync,
    fsync_dir,
    lstat_at,
    read_file,
    refuse_symlink,
    write_all,
)
from .ids import validate_run_id
from .layout import Layout
from .oserrors import mapped
from .version import open_version

_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | O_NOFOLLOW | O_CLOEXEC

_TAILS_MAX = 1024
_TAIL_LINES = 16
_TAIL_CHUNK = 8192  # first backward read of a ledger; doubles up to 1 MiB



class _Tail:
    """What a store knows of a ledger file's end (valid while inode and size match)."""

    __slots__ = ("ino", "size", "valid_end", "count", "head", "lines")

    def __init__(self, ino: int, size: int, valid_end: int, count: int, head: Optional[str],
                 lines: List[Tuple[int, bytes]]) -> None:
        self.ino = ino
        self.size = size
        self.valid_end = valid_end  # end of the last good line; < size if the tail is torn
        self.count = count
        self.head = head
        self.lines = lines  # (seq, raw line) of the last few records, oldest first


class FileLedgerStore:
    """Hash-chained JSONL ledgers, one file per run (see the module docstring)."""

    def __init__(self, data_dir: Any, *, fsync: bool = True, create: bool = True,
                 version_checked: bool = False) -> None:
        self._layout = Layout.of(data_dir, create=create)
        if not version_checked:  # (open_file_stores: the run store just did, same layout)
            open_version(self._layout)
        self._fsync = fsync
        self._tails: Dict[str, _Tail] = {}

    @property
    def data_dir(self) -> str:
        return self._layout.root

    def path_of(self, run_id: str) -> str:
        """The file a run's ledger lives in."""
        return self._layout.ledger_path(validate_run_id(run_id))

    def close(self) -> None:
        self._tails.clear()

    def _cache(self, rid: str, tail: _Tail) -> None:
        if len(self._tails) >= _TAILS_MAX and rid not in self._tails:
            self._tails.clear()
        self._tails[rid] = tail

    # ------------------------------------------------------------------ append

    def append(self, record: StepRecord) -> Dict[str, Any]:
        """Chain and durably append a record; fills in its seq, prev_hash and record_hash.

        Callers hold the run's lock (the runtime does), so one process appends at a time;
        the append goes through the lock's own descriptor of the file when there is one.
        A write or sync that fails (disk full, ...) is cut off again: nothing half-written
        stays behind.
        """
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[StepRecord]) -> List[Dict[str, Any]]:
        """``append`` for consecutive records of one run: one write, one fdatasync.

        The kernel batches records that nothing acts on in between (a resume and the wait
        or end that follows it), so a resume costs one ledger sync, not two. A crash
        leaves a prefix of the batch (whole lines; a torn last one is dropped)."""
        if not records:
            return []
        rid = validate_run_id(records[0].run_id)
        if any(r.run_id != rid for r in records):
            raise ValueError("append_many: records of one run only")
        path = self._layout.ledger_path(rid)
        stored_all: List[Dict[str, Any]] = []
        with mapped(path):
            held = locks.held_append_fd(path)
            own = held is None
            fd = held if held is not None else self._open_for_append(rid)
            try:
                st = os.fstat(fd)
                tail = self._tails.get(rid)
                if tail is None or tail.ino != st.st_ino or tail.size != st.st_size:
                    tail = _scan_tail(fd, st.st_size, path, st.st_ino, since=None)
                if tail.valid_end < st.st_size:
                    os.ftruncate(fd, tail.valid_end)  # drop a torn last line before appending
                count, head = tail.count, tail.head
                lines: List[bytes] = []
                for record in records:
                    stored = chain_record(record.to_jsonable(), seq=count, prev_hash=head)
                    lines.append((json.dumps(stored, ensure_ascii=False, separators=(",", ":"))
                                  + "\n").encode("utf-8"))
                    stored_all.append(stored)
                    count, head = count + 1, stored["record_hash"]
                data = b"".join(lines)
                try:
                    write_all(fd, data)
                    if self._fsync:
                        data_sync(fd)
                except BaseException:
                    self._tails.pop(rid, None)
                    try:
                        os.ftruncate(fd, tail.valid_end)
                    except OSError:
                        pass  # the next append drops the torn line anyway
                    raise
            finally:
                if own:
                    os.close(fd)
        recent = tail.lines[-(_TAIL_LINES - len(lines)):] if len(lines) < _TAIL_LINES else []
        recent += [(tail.count + i, line[:-1]) for i, line in enumerate(lines)][-_TAIL_LINES:]
        end = tail.valid_end + len(data)
        self._cache(rid, _Tail(st.st_ino, end, end, count, head, recent))
        for record, stored in zip(records, stored_all, strict=True):
            record.seq, record.prev_hash, record.record_hash = (
                stored["seq"], stored["prev_hash"], stored["record_hash"])
        return stored_all

    def _open_for_append(self, rid: str) -> int:
        name = rid + ".jsonl"
        for attempt in (1, 2):
            shard = self._layout.shard_fd(rid, create=True)
            assert shard is not None
            try:
                try:
                    return os.open(name, _APPEND_FLAGS, dir_fd=shard)
                except FileNotFoundError:
                    pass
                # No run file or lock made it for us (a ledger used on its own): create
                # it, and make its directory entry durable ourselves.
                fd = os.open(name, _APPEND_FLAGS | os.O_CREAT, FILE_MODE, dir_fd=shard)
                if self._fsync:
                    fsync_dir(shard)
                return fd
            except FileNotFoundError:
                if attempt == 2 or not self._layout.forget_if_gone(Layout.shard_of(rid)):
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ reads

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        """Every record, oldest first (a torn last line is ignored)."""
        rid = validate_run_id(run_id)
        path = self._layout.ledger_path(rid)
        with mapped(path):
            shard = self._layout.shard_fd(rid, create=False)
            got = read_file(shard, rid + ".jsonl") if shard is not None else None
        if got is None:
            return []
        data, _ = got
        segments = data.split(b"\n")
        last = max((i for i, s in enumerate(segments) if s.strip()), default=-1)
        out: List[Dict[str, Any]] = []
        for i, seg in enumerate(segments):
            if not seg.strip():
                continue
            terminated = i < len(segments) - 1
            rec, why = _parse_line(seg)
            if i == last and (not terminated or rec is None):
                break  # a torn last line: the append it belonged to never returned
            if rec is None:
                raise CorruptLedgerError(path, i + 1, why or "unparsable")
            out.append(rec)
        return out

    def head(self, run_id: str) -> Tuple[int, Optional[str]]:
        """(record count, hash of the last record), from the cache or the file's tail."""
        rid = validate_run_id(run_id)
        with mapped(self._layout.ledger_path(rid)):
            tail = self._fresh_tail(rid, since=None)
        return (tail.count, tail.head) if tail is not None else (0, None)

    def records_since(self, run_id: str, count: int) -> List[Dict[str, Any]]:
        """Records with ``seq >= count``, oldest first; reads only the file's tail."""
        rid = validate_run_id(run_id)
        count = max(int(count), 0)
        with mapped(self._layout.ledger_path(rid)):
            tail = self._fresh_tail(rid, since=None)
            if tail is None or count >= tail.count:
                return []
            if not tail.lines or tail.lines[0][0] > count:
                tail = self._fresh_tail(rid, since=count, force=True)
                if tail is None:
                    return []
        out = [json.loads(raw) for seq, raw in tail.lines if seq >= count]
        del tail.lines[:-_TAIL_LINES]  # keep the cache small however far back we read
        return out

    def _fresh_tail(self, rid: str, *, since: Optional[int],
                    force: bool = False) -> Optional[_Tail]:
        path = self._layout.ledger_path(rid)
        name = rid + ".jsonl"
        shard = self._layout.shard_fd(rid, create=False)
        if shard is None:
            self._tails.pop(rid, None)
            return None
        tail = self._tails.get(rid)
        if tail is not None and not force:
            st = lstat_at(shard, name)
            if st is None:
                self._tails.pop(rid, None)
                return None
            refuse_symlink(st)
            if st.st_ino == tail.ino and st.st_size == tail.size:
                return tail
        try:
            fd = os.open(name, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC, dir_fd=shard)
        except FileNotFoundError:
            self._tails.pop(rid, None)
            return None
        try:
            st = os.fstat(fd)
            tail = _scan_tail(fd, st.st_size, path, st.st_ino, since=since)
        finally:
            os.close(fd)
        self._cache(rid, tail)
        return tail


def _parse_line(raw: bytes) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    try:
        rec = json.loads(raw)
    except ValueError as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(rec, dict):
        return None, f"not a JSON object but {type(rec).__name__}"
    return rec, None


def _scan_tail(fd: int, size: int, path: str, ino: int, *, since: Optional[int]) -> _Tail:
    """Read a ledger backwards from its end: its head, its torn tail, recent records.

    Stops at the last valid record (``since`` None) or at the first record with
    ``seq < since``. Only the last line may be bad (torn); a bad line before a good one
    raises CorruptLedgerError.
    """
    chunk = _TAIL_CHUNK
    pos = size
    buf = b""
    found: List[Tuple[int, bytes]] = []  # newest first
    count: Optional[int] = None
    head: Optional[str] = None
    valid_end = 0
    seen_last_line = False  # the file's last non-blank line has been looked at
    while True:
        if pos > 0:
            n = min(chunk, pos)
            pos -= n
            buf = os.pread(fd, n, pos) + buf
            chunk = min(chunk * 2, 1 << 20)
            nl = buf.find(b"\n")
            if nl < 0:
                continue  # not one whole line yet
            # Bytes before the first newline belong to a line that starts further back.
            keep, rest, rest_off = buf[:nl + 1], buf[nl + 1:], pos + nl + 1
        else:
            keep, rest, rest_off = b"", buf, 0
        segs = rest.split(b"\n")
        offsets = []
        off = rest_off
        for s in segs:
            offsets.append(off)
            off += len(s) + 1
        for i in range(len(segs) - 1, -1, -1):
            seg = segs[i]
            if not seg.strip():
                continue
            terminated = i < len(segs) - 1
            rec, why = _parse_line(seg) if terminated else (None, "no newline (torn write)")
            seq = rec.get("seq") if rec is not None else None
            if rec is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
                # Not one of ours (no seq): count records from the start instead.
                return _full_tail(fd, size, path, ino)
            if rec is None:
                if not seen_last_line:
                    seen_last_line = True
                    continue  # the torn last line: ignored (and truncated on next append)
                raise CorruptLedgerError(path, _line_no(fd, offsets[i]), why or "unparsable")
            seen_last_line = True
            assert isinstance(seq, int)
            if count is None:
                count, head = seq + 1, rec.get("record_hash")
                valid_end = offsets[i] + len(seg) + 1
            if since is not None and seq >= since or not found:
                found.append((seq, seg))
            if since is None or seq < since:
                return _Tail(ino, size, valid_end, count, head, found[::-1])
        buf = keep
        if pos == 0 and not buf:
            break
        if pos == 0:
            # ``keep`` is the first line of the file, already complete: process it next.
            continue
    if count is None:
        return _Tail(ino, size, 0, 0, None, [])
    return _Tail(ino, size, valid_end, count, head, found[::-1])


def _full_tail(fd: int, size: int, path: str, ino: int) -> _Tail:
    """The slow path for ledgers whose records carry no ``seq``: read it all."""
    data = os.pread(fd, size, 0)
    segments = data.split(b"\n")
    last = max((i for i, s in enumerate(segments) if s.strip()), default=-1)
    records: List[Tuple[int, bytes]] = []
    head: Optional[str] = None
    valid_end = off = 0
    for i, seg in enumerate(segments):
        start, off = off, off + len(seg) + 1
        if not seg.strip():
            continue
        rec, why = _parse_line(seg)
        if i == last and (i == len(segments) - 1 or rec is None):
            break
        if rec is None:
            raise CorruptLedgerError(path, i + 1, why or "unparsable")
        records.append((len(records), seg))
        head = rec.get("record_hash")
        valid_end = start + len(seg) + 1
    return _Tail(ino, size, valid_end, len(records), head, records[-_TAIL_LINES:])


def _line_no(fd: int, offset: int) -> int:
    """1-based line number of the line starting at ``offset`` (error path only)."""
    n = 1
    pos = 0
    while pos < offset:
        block = os.pread(fd, min(1 << 20, offset - pos), pos)
        if not block:
            break
        n += block.count(b"\n")
        pos += len(block)
    return n

