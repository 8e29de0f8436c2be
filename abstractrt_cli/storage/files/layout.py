"""Where things are under the data dir, and its directories as verified descriptors.

A ``Layout`` is shared by every store of one data dir in a process (``Layout.of``). It
holds a descriptor of the data dir and, opened on first use and kept, one of each
directory below it (``runs``, ``runs/<a>``, ``index``), each opened with ``O_NOFOLLOW``
from its parent's descriptor: a symlink where a directory belongs is refused, and every
file operation goes through these descriptors (``dir_fd=``), so none can be redirected
outside the data dir, not even by a directory swapped for a link mid-operation. The kept
descriptors also make directory fsyncs cheap; each is checked against its path with one
``lstat`` before use, so a directory moved or replaced meanwhile is never written into.

Directories are created only by writes (``create=True``), 0700, each ``mkdir`` made
durable by an fsync of its parent: a query never creates anything.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from .atomic import ensure_private_dir, make_private_dir_at, open_dir
from .oserrors import mapped

T = TypeVar("T")


class Layout:
    """Paths and directory descriptors of one data dir (see the module docstring)."""

    _shared: "weakref.WeakValueDictionary[str, Layout]" = weakref.WeakValueDictionary()
    _shared_guard = threading.Lock()

    @classmethod
    def of(cls, data_dir: Any, *, create: bool = True) -> "Layout":
        """The process's Layout of ``data_dir`` (created 0700 first if ``create``)."""
        path = os.path.abspath(os.fspath(data_dir))
        with mapped(path):
            if create:
                ensure_private_dir(path, fsync=True)
            # The real path: lock files are registered per process by path (see locks.py),
            # so two spellings of one data dir must not make two registrations of one lock.
            root = os.path.realpath(path)
            with cls._shared_guard:
                layout = cls._shared.get(root)
                if layout is None or layout.closed:
                    layout = cls(root)
                    cls._shared[root] = layout
        return layout

    def __init__(self, root: str) -> None:
        self.root = root
        self.runs = os.path.join(root, "runs")
        self.index = os.path.join(root, "index")
        self.index_db = os.path.join(self.index, "index.sqlite3")
        self.rebuild_lock = os.path.join(self.index, "rebuild.lock")
        self._mutex = threading.Lock()
        with mapped(root):
            # The data dir itself may be a symlink (the user's choice of where data
            # lives); what is inside it may not.
            self.root_fd = open_dir(root)
        # rel -> (descriptor, (st_dev, st_ino) it was opened on)
        self._fds: Dict[str, Tuple[int, Tuple[int, int]]] = {}
        self._retired: List[int] = []
        self.closed = False
        # This process may read here but not write (a read-only mount, no permission):
        # then nothing tries to (see version.py and index.py).
        self.read_only = not os.access(root, os.W_OK)
        self.version = 0  # set by version.open_version
        self._finalizer = weakref.finalize(self, _close_fds, self.root_fd, self._fds,
                                           self._retired)

    def close(self) -> None:
        self.closed = True
        self._finalizer()

    # ------------------------------------------------------------------ paths

    def run_path(self, run_id: str) -> str:
        return os.path.join(self.runs, run_id[0], run_id + ".json")

    def ledger_path(self, run_id: str) -> str:
        return os.path.join(self.runs, run_id[0], run_id + ".jsonl")

    @staticmethod
    def shard_of(run_id: str) -> str:
        return "runs/" + run_id[0]

    # ------------------------------------------------------------------ directories

    def dir_fd(self, rel: str, *, create: bool, check: bool = True) -> Optional[int]:
        """The descriptor of ``rel`` ("runs", "runs/a", "index"); None if it does not
        exist and ``create`` is false. Creating makes each new ``mkdir`` durable.

        A kept descriptor is used only while the path still leads to it (an ``lstat`` a
        component): a directory moved away, removed, or replaced by a symlink meanwhile is
        opened afresh (and a symlink refused), so nothing is written where the path does
        not go. ``check=False``: the caller checked it a moment ago, in the same operation.
        """
        kept = self._fds.get(rel)
        if kept is not None:
            if not check:
                return kept[0]
            moved = self._first_moved(rel)
            if moved is None:
                return kept[0]
            self._forget(moved)
        with self._mutex, mapped(os.path.join(self.root, rel)):
            parent = self.root_fd
            parts = rel.split("/")
            fd = None
            for i, part in enumerate(parts):
                sub = "/".join(parts[:i + 1])
                kept = self._fds.get(sub)
                if kept is None:
                    try:
                        fd = open_dir(part, dir_fd=parent)
                    except FileNotFoundError:
                        if not create:
                            return None
                        make_private_dir_at(parent, part, fsync=True)
                        fd = open_dir(part, dir_fd=parent)
                    st = os.fstat(fd)
                    self._fds[sub] = (fd, (st.st_dev, st.st_ino))
                else:
                    fd = kept[0]
                parent = fd
            return fd

    def _first_moved(self, rel: str) -> Optional[str]:
        """The first component of ``rel`` that no longer leads to the directory we keep
        for it (moved, removed, replaced by a symlink); None if all still do."""
        parent = self.root_fd
        parts = rel.split("/")
        for i, part in enumerate(parts):
            sub = "/".join(parts[:i + 1])
            kept = self._fds.get(sub)
            if kept is None:
                return sub
            try:
                st = os.stat(part, dir_fd=parent, follow_symlinks=False)
            except OSError:
                return sub
            if (st.st_dev, st.st_ino) != kept[1]:
                return sub
            parent = kept[0]
        return None

    def _forget(self, rel: str) -> None:
        # Not closed now: another thread may be using the descriptor this very moment,
        # and a closed number can be reused by the next open (writes would land in the
        # wrong file). Directories are replaced rarely; the retired ones close with us.
        with self._mutex:
            for key in [k for k in self._fds if k == rel or k.startswith(rel + "/")]:
                self._retired.append(self._fds.pop(key)[0])

    def shard_fd(self, run_id: str, *, create: bool, check: bool = True) -> Optional[int]:
        return self.dir_fd(self.shard_of(run_id), create=create, check=check)

    def in_dir(self, rel: str, fn: Callable[[int], T], *, create: bool) -> Optional[T]:
        """``fn(descriptor of rel)``; None (``fn`` not called) if the directory does not
        exist and ``create`` is false. A directory removed under us is opened afresh once
        (``forget_if_gone``), so a write never lands in a dead one."""
        for attempt in (1, 2):
            fd = self.dir_fd(rel, create=create)
            if fd is None:
                return None
            try:
                return fn(fd)
            except FileNotFoundError:
                if attempt == 2 or not self.forget_if_gone(rel):
                    raise
        raise AssertionError("unreachable")

    def forget_if_gone(self, rel: str) -> bool:
        """Drop a kept descriptor whose directory was removed (a file created in it fails
        with ENOENT); True if it was, so the caller retries through a fresh one."""
        kept = self._fds.get(rel)
        if kept is None or os.fstat(kept[0]).st_nlink > 0:
            return False
        self._forget(rel)
        return True


def _close_fds(root_fd: int, fds: Dict[str, Tuple[int, Tuple[int, int]]],
               retired: List[int]) -> None:
    for fd in [fd for fd, _ in fds.values()] + retired:
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
    retired.clear()
    try:
        os.close(root_fd)
    except OSError:
        pass


def _reset_after_fork() -> None:
    # A thread of the parent may have held a mutex at the fork; the child has no such
    # thread, so it starts with fresh ones (the descriptors stay valid in the child).
    Layout._shared_guard = threading.Lock()
    for layout in list(Layout._shared.values()):
        layout._mutex = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
