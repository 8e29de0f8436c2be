"""Snapshots of the file store (PRODUCT §9): named copies of a run's state.

Layout::

    snapshots/<a>/<run_id>/<n>.json    one snapshot (indented JSON), created once

``<n>`` is ``n.<name>`` for a name that is a safe file name, else ``h.<sha256 of the
name>``: any name can be kept, and the two forms never collide. A snapshot is written to
a temp file and ``link``ed into place (``atomic.create_new``): it appears whole or not
at all, and of two processes keeping the same name for one run at once, exactly one
succeeds (the other gets SnapshotExistsError).

A run's snapshots are one directory (``list_snapshots(run_id=...)`` and
``delete_snapshots`` read only it); listing by tag alone reads every snapshot, which is
what a snapshot listing of the whole store costs anyway. Per-run directories are opened
for each operation and closed after it (the layout keeps descriptors only of the
directories there are few of).
"""

from __future__ import annotations

import errno
import json
import os
import re
from typing import Any, Callable, Dict, List, Optional, TypeVar

from ...errors import SnapshotExistsError, StoreIOError
from .. import rules
from .atomic import create_new, make_private_dir_at, open_dir, read_file, unlink_at
from .ids import is_valid_run_id, validate_run_id
from .jsonfmt import dumps_readable
from .layout import Layout
from .oserrors import mapped
from ...core.sha import sha256

T = TypeVar("T")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


def file_name(name: str) -> str:
    if _SAFE_NAME.fullmatch(name) and ".." not in name:
        return f"n.{name}.json"
    return "h." + sha256(name.encode("utf-8")).hexdigest() + ".json"


class FileSnapshotStore:
    """SnapshotStore over files (see the module docstring)."""

    def __init__(self, layout: Layout, *, fsync: bool = True) -> None:
        self._layout = layout
        self._fsync = fsync

    def close(self) -> None:
        pass

    def dir_of(self, run_id: str) -> str:
        return os.path.join(self._layout.root, "snapshots", run_id[0], run_id)

    def _in_run_dir(self, rid: str, fn: Callable[[int], T], *, create: bool) -> Optional[T]:
        def in_shard(shard: int) -> Optional[T]:
            if create:
                make_private_dir_at(shard, rid, fsync=self._fsync)
            try:
                fd = open_dir(rid, dir_fd=shard)
            except FileNotFoundError:
                if create:
                    raise  # removed meanwhile (a delete): in_dir's retry makes it again
                return None
            try:
                return fn(fd)
            finally:
                os.close(fd)

        for attempt in (1, 2):
            try:
                return self._layout.in_dir("snapshots/" + rid[0], in_shard, create=create)
            except FileNotFoundError:
                if attempt == 2 or not create:
                    raise
        raise AssertionError("unreachable")

    def put_snapshot(self, snapshot: Dict[str, Any]) -> None:
        """Keep it; SnapshotExistsError if the run has a snapshot of that name."""
        snap = rules.check_snapshot(snapshot)
        rid, name = validate_run_id(snap["run_id"]), snap["name"]
        data = dumps_readable(snap).encode("utf-8")
        fname = file_name(name)
        with mapped(os.path.join(self.dir_of(rid), fname)):
            created = self._in_run_dir(
                rid, lambda fd: create_new(fd, fname, data, fsync=self._fsync), create=True)
        if not created:
            raise SnapshotExistsError(rid, name)

    def get_snapshot(self, run_id: str, name: str) -> Optional[Dict[str, Any]]:
        rid = validate_run_id(run_id)
        fname = file_name(name)
        path = os.path.join(self.dir_of(rid), fname)
        with mapped(path):
            got = self._in_run_dir(rid, lambda fd: read_file(fd, fname), create=False)
        if got is None:
            return None
        snap = _parse(path, got[0])
        return snap if snap.get("name") == name else None

    def list_snapshots(self, *, run_id: Optional[str] = None,
                       tag: Optional[str] = None) -> List[Dict[str, Any]]:
        """Snapshots, oldest first, of one run and/or with one tag."""
        if run_id is not None:
            rids = [validate_run_id(run_id)]
        else:
            rids = self._all_run_ids()
        out: List[Dict[str, Any]] = []
        for rid in rids:
            out.extend(s for s in self._read_run(rid) if rules.snapshot_matches(s, run_id, tag))
        out.sort(key=rules.snapshot_order)
        return out

    def delete_snapshots(self, run_id: str) -> int:
        """Drop every snapshot of a run (prune); how many."""
        rid = validate_run_id(run_id)

        def drop(fd: int) -> int:
            n = 0
            for name in _names(fd):
                if unlink_at(fd, name) and not name.startswith("."):
                    n += 1
            return n

        with mapped(self.dir_of(rid)):
            n = self._in_run_dir(rid, drop, create=False)
            if n is None:
                return 0

            def rmdir(shard: int) -> None:
                try:
                    os.rmdir(rid, dir_fd=shard)
                except OSError as exc:
                    # Not empty: a snapshot kept meanwhile stays (and so does its directory).
                    if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                        raise

            self._layout.in_dir("snapshots/" + rid[0], rmdir, create=False)
        return n

    def _read_run(self, rid: str) -> List[Dict[str, Any]]:
        base = self.dir_of(rid)

        def read(fd: int) -> List[Dict[str, Any]]:
            out = []
            for name in _names(fd):
                if name.startswith(".") or not name.endswith(".json"):
                    continue
                with mapped(os.path.join(base, name)):
                    got = read_file(fd, name)
                if got is not None:
                    out.append(_parse(os.path.join(base, name), got[0]))
            return out

        with mapped(base):
            return self._in_run_dir(rid, read, create=False) or []

    def _all_run_ids(self) -> List[str]:
        base = self._layout.dir_fd("snapshots", create=False)
        if base is None:
            return []
        rids: List[str] = []
        with os.scandir(base) as shards:
            shard_names = sorted(e.name for e in shards if e.is_dir(follow_symlinks=False)
                                 and len(e.name) == 1)
        for shard_name in shard_names:
            def ids(fd: int, shard_name: str = shard_name) -> List[str]:
                with os.scandir(fd) as it:
                    return [e.name for e in it if e.is_dir(follow_symlinks=False)
                            and is_valid_run_id(e.name) and e.name[0] == shard_name]
            rids.extend(sorted(self._layout.in_dir("snapshots/" + shard_name, ids,
                                                   create=False) or []))
        return rids


def _names(fd: int) -> List[str]:
    with os.scandir(fd) as it:
        return [e.name for e in it if not e.is_dir(follow_symlinks=False)]


def _parse(path: str, data: bytes) -> Dict[str, Any]:
    try:
        snap = json.loads(data)
        if not isinstance(snap, dict) or not isinstance(snap.get("state"), dict):
            raise ValueError("not a snapshot object")
    except ValueError as exc:
        raise StoreIOError(path, f"not a snapshot: {exc}", code="corrupt_snapshot") from None
    return snap
