"""Append-only JSON Lines files beside the ledgers: event receipts, logs, prune records.

``append_lines`` writes whole lines with ``O_APPEND``, so appends from several processes
never interleave within a line (each is one ``write`` of a few hundred bytes at most, on
a local file system) and none is lost. A crash can leave a torn last line; the next
append first ends it with a newline, so nothing is ever glued onto half of another line,
and readers (``read_lines``) skip a line that does not parse. Unlike a ledger, these
files carry no chain: a torn line is simply a write that never returned.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .atomic import FILE_MODE, O_CLOEXEC, O_NOFOLLOW, data_sync, fsync_dir, write_all

_FLAGS = os.O_RDWR | os.O_APPEND | O_NOFOLLOW | O_CLOEXEC


def encode_line(obj: Any) -> bytes:
    """One compact JSON line (NaN and Infinity refused: ValueError)."""
    return (json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            + "\n").encode("utf-8")


def open_append(dir_fd: int, name: str, *, fsync: bool) -> int:
    """``name`` opened for appending (and reading), created 0600 if missing (its directory
    entry then made durable)."""
    try:
        return os.open(name, _FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(name, _FLAGS | os.O_CREAT, FILE_MODE, dir_fd=dir_fd)
    if fsync:
        fsync_dir(dir_fd)
    return fd


def append_to(fd: int, lines: Sequence[bytes], *, fsync: bool) -> int:
    """Append whole lines to an open file; the file's size after."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "not a regular file")
    data = b"".join(lines)
    if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
        data = b"\n" + data  # end a line torn by a crash first
    write_all(fd, data)
    if fsync:
        data_sync(fd)
    return st.st_size + len(data)


def append_lines(dir_fd: int, name: str, lines: Sequence[bytes], *, fsync: bool) -> None:
    """Append whole lines to ``name`` (created if missing); durable if ``fsync``."""
    fd = open_append(dir_fd, name, fsync=fsync)
    try:
        append_to(fd, lines, fsync=fsync)
    finally:
        os.close(fd)


def parse_lines(data: bytes) -> Tuple[List[Dict[str, Any]], int]:
    """The JSON objects of whole lines, and how many lines were skipped (torn)."""
    out: List[Dict[str, Any]] = []
    skipped = 0
    segments = data.split(b"\n")
    for i, seg in enumerate(segments):
        if not seg.strip():
            continue
        if i == len(segments) - 1:
            skipped += 1  # no newline: a write that never returned
            continue
        try:
            obj = json.loads(seg)
        except ValueError:
            skipped += 1
            continue
        if isinstance(obj, dict):
            out.append(obj)
        else:
            skipped += 1
    return out, skipped


def read_lines(dir_fd: int, name: str) -> Optional[Tuple[List[Dict[str, Any]], int]]:
    """``parse_lines`` of the file, or None if it does not exist."""
    from .atomic import read_file

    got = read_file(dir_fd, name)
    if got is None:
        return None
    return parse_lines(got[0])
