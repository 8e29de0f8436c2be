"""The data dir's format version (``format.json``), and upgrading older data dirs in place.

``format.json`` holds ``{"format": N}``. A data dir without one is version 1 (the layout
of abstractrt 0.1: a separate lock file per run under ``locks/``). Version 2 locks a run
on its ledger file, which exists anyway, instead: one file creation less per run.
Version 3 indexes the deadline of a person's or an event's wait as the time the run is
due (``rules.due_at``), and keeps the event mailbox, snapshots, artifacts, audit records
and logs (``events/``, ``snapshots/``, ``artifacts/``, ``audit/``, ``logs/``, made on
first use); its upgrade makes every query re-check the rows of runs waiting for a person
or an event, whose due time the index did not hold (``_v2_to_v3``).

Opening a data dir this code can write (queries included: like building the index, it
is the store keeping itself) upgrades it before anything else happens, under an
exclusive ``flock`` on the data dir, so two processes opening it at once upgrade it once.
Every step is idempotent and the new version is written last, atomically: a crash at any
moment of an upgrade leaves a data dir at its old version, still readable, and the next
open finishes the job. A data dir of a *newer* version is refused (DataDirVersionError):
this code cannot know what it would break. One this process cannot write is read at
whatever version it has (the layouts read the same), and never changed.

Processes of an older abstractrt must not use a data dir while a newer one does (they
do not read ``format.json``, and would lock runs their old way).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from typing import Callable, Dict

from ...errors import DataDirVersionError, StoreIOError
from .atomic import O_CLOEXEC, O_NOFOLLOW, atomic_write, lstat_at, open_dir, refuse_symlink
from .layout import Layout
from .oserrors import cannot_write, mapped

FORMAT_VERSION = 3
FORMAT_FILE = "format.json"


def read_version(layout: Layout) -> int:
    """The data dir's format version (1 if it has no format file)."""
    path = os.path.join(layout.root, FORMAT_FILE)
    with mapped(path):
        try:
            fd = os.open(FORMAT_FILE, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC, dir_fd=layout.root_fd)
        except FileNotFoundError:
            return 1
        try:
            data = os.read(fd, 65536)
        finally:
            os.close(fd)
    try:
        version = json.loads(data)["format"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(version)
    except (ValueError, KeyError, TypeError):
        raise StoreIOError(path, 'not a format file: expected {"format": <version>}; restore '
                           "it from a backup, or delete it if this data dir was made by "
                           "abstractrt 0.1", code="bad_format_file") from None
    return version


def open_version(layout: Layout) -> int:
    """Check the data dir's version, upgrading it if it is older and we may write.

    Sets ``layout.version`` (and ``layout.read_only`` when an older data dir cannot be
    upgraded because this process may not write it).
    """
    version = read_version(layout)
    if version > FORMAT_VERSION:
        raise DataDirVersionError(layout.root, version, FORMAT_VERSION)
    if version < FORMAT_VERSION:
        try:
            version = upgrade(layout)
        except OSError as exc:  # StoreIOError included
            if not cannot_write(exc):
                raise
            layout.read_only = True
    layout.version = version
    return version


def upgrade(layout: Layout) -> int:
    """Bring the data dir to FORMAT_VERSION, step by step, under an exclusive flock."""
    with mapped(layout.root):
        fcntl.flock(layout.root_fd, fcntl.LOCK_EX)
        try:
            version = read_version(layout)  # another process may have done it meanwhile
            if version > FORMAT_VERSION:
                raise DataDirVersionError(layout.root, version, FORMAT_VERSION)
            while version < FORMAT_VERSION:
                STEPS[version](layout)
                version += 1
            write_version(layout, version)
            return version
        finally:
            fcntl.flock(layout.root_fd, fcntl.LOCK_UN)


def write_version(layout: Layout, version: int) -> None:
    refuse_symlink(lstat_at(layout.root_fd, FORMAT_FILE))
    data = (json.dumps({"format": version}) + "\n").encode()
    atomic_write(layout.root_fd, FORMAT_FILE, data, fsync=True)


def _v1_to_v2(layout: Layout) -> None:
    """Version 2 locks runs on their ledgers: remove version 1's ``locks/`` tree.

    Idempotent: each file and directory removed is simply not there the next time.
    """
    st = lstat_at(layout.root_fd, "locks")
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink("locks", dir_fd=layout.root_fd)  # never follow a link: remove the link
        return
    locks_fd = open_dir("locks", dir_fd=layout.root_fd)
    try:
        with os.scandir(locks_fd) as shards:
            names = [(e.name, e.is_dir(follow_symlinks=False)) for e in shards]
        for name, is_dir in names:
            if not is_dir:
                _unlink_missing_ok(locks_fd, name)
                continue
            shard_fd = open_dir(name, dir_fd=locks_fd)
            try:
                with os.scandir(shard_fd) as files:
                    for entry in files:
                        if entry.is_dir(follow_symlinks=False):
                            continue  # not ours: leave it, and the directories above it
                        _unlink_missing_ok(shard_fd, entry.name)
            finally:
                os.close(shard_fd)
            _rmdir_if_empty(locks_fd, name)
    finally:
        os.close(locks_fd)
    _rmdir_if_empty(layout.root_fd, "locks")
    os.fsync(layout.root_fd)


def _unlink_missing_ok(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _rmdir_if_empty(dir_fd: int, name: str) -> None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


def _v2_to_v3(layout: Layout) -> None:
    """Version 3 indexes deadlines: mark the rows of runs waiting for a person or an
    event dirty, so that queries re-read those runs and write their rows anew (with the
    deadline as their due time), each under its run's lock.

    Idempotent (marking a row dirty twice is marking it once) and crash-safe: a dirty row
    is always a correct row (the invariant of ``index.py``); until the new version is
    written, nothing relies on the new rows. No index yet, or an unreadable one: nothing
    to do (it is built from the run files, with deadlines, on first use).
    """
    from .index import IndexCorruptError, RunIndex

    index_fd = layout.dir_fd("index", create=False)
    if index_fd is None:
        return
    st = lstat_at(index_fd, os.path.basename(layout.index_db))
    if st is None:
        return
    refuse_symlink(st)
    idx = RunIndex(layout.index_db, dir_ready=lambda create: True)
    try:
        idx.connect()
        if idx.read_only:  # (its fallback would mark rows of a copy in memory)
            raise PermissionError(errno.EACCES, "the index cannot be written", layout.index_db)
        idx.mark_dirty_waiting(("user", "event"))
    except IndexCorruptError:
        pass  # rebuilt from the run files on first use
    finally:
        idx.close()


#: STEPS[n] upgrades a data dir from version n to n + 1.
STEPS: Dict[int, Callable[[Layout], None]] = {1: _v1_to_v2, 2: _v2_to_v3}
