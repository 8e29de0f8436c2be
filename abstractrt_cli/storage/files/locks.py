"""Per-run locks between processes (``fcntl.flock``) and between threads of one process.

``flock`` locks belong to an *open file description*: two descriptors opened on the same
lock file in one process would lock each other out (or, worse, one ``LOCK_UN`` would free
the other's lock). So a process keeps one registry of the lock files it holds, keyed by
path and shared by every store instance: the registry's per-path mutex gives mutual
exclusion between threads, the ``flock`` between processes. The lock file is kept after
release (deleting it would race with a process about to lock it) and its descriptor is
closed, so holding nothing costs no file descriptors.

``flock`` is released by the kernel when its holder dies, ``kill -9`` included: a crashed
process never leaves a run locked.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional

from .atomic import FILE_MODE


class _Entry:
    __slots__ = ("mutex", "owner", "fd")

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.owner: Optional[int] = None  # thread ident of the holder
        self.fd: Optional[int] = None


_guard = threading.Lock()
_entries: Dict[str, _Entry] = {}


def _reset_after_fork() -> None:
    # The child inherits the parent's descriptors (same open file descriptions, so the
    # same flocks), but it holds nothing itself; unlocking them would free the parent's.
    global _guard, _entries
    _guard = threading.Lock()
    _entries = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _entry(path: str) -> _Entry:
    with _guard:
        e = _entries.get(path)
        if e is None:
            e = _entries[path] = _Entry()
        return e


def held_by_current_thread(path: str) -> bool:
    e = _entries.get(path)
    return e is not None and e.owner == threading.get_ident()


def held_in_process(path: str) -> bool:
    e = _entries.get(path)
    return e is not None and e.owner is not None


def try_acquire(path: str, timeout: float, *, prepare: Optional[Callable[[], None]] = None) -> bool:
    """Take the lock at ``path``; False if it is still held elsewhere after ``timeout``.

    ``timeout <= 0`` tries once. The same thread asking again gets False at once: the
    lock is not re-entrant, and waiting would only wait for ourselves.
    """
    e = _entry(path)
    me = threading.get_ident()
    if e.owner == me:
        return False
    deadline = time.monotonic() + max(timeout, 0.0)
    if timeout > 0:
        if not e.mutex.acquire(timeout=timeout):
            return False
    elif not e.mutex.acquire(blocking=False):
        return False
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        except FileNotFoundError:
            if prepare is None:
                raise
            prepare()  # create the lock file's directory, then try again
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    os.close(fd)
                    e.mutex.release()
                    return False
                time.sleep(min(delay, left))
                delay = min(delay * 1.5, 0.025)
            except BaseException:
                os.close(fd)
                raise
    except BaseException:
        e.mutex.release()
        raise
    e.fd = fd
    e.owner = me
    return True


def release(path: str) -> None:
    e = _entries.get(path)
    if e is None or e.owner != threading.get_ident():
        raise RuntimeError(f"lock {path} is not held by this thread")
    fd, e.fd, e.owner = e.fd, None, None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
    finally:
        e.mutex.release()


@contextmanager
def held(path: str, timeout: float, on_busy: Callable[[], BaseException],
         *, prepare: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Hold the lock at ``path`` for the ``with`` block; raise ``on_busy()`` if busy."""
    if not try_acquire(path, timeout, prepare=prepare):
        raise on_busy()
    try:
        yield
    finally:
        release(path)


class SharedFlock:
    """A shared ``flock`` on one file, held by any number of this process's threads at once.

    Index-changing saves hold it shared; an index rebuild takes the same file exclusively
    (through ``held``), so a rebuild never runs while a row and its run file are being
    changed together, and needs no per-run lock. One descriptor per instance, kept open;
    a forked child opens its own (unlocking the inherited one would unlock the parent).
    """

    def __init__(self, path: str, *, prepare: Optional[Callable[[], None]] = None) -> None:
        self.path = path
        self._prepare = prepare
        self._mutex = threading.Lock()
        self._fd: Optional[int] = None
        self._count = 0
        self._pid = os.getpid()

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(self.path, flags, FILE_MODE)
        except FileNotFoundError:
            if self._prepare is None:
                raise
            self._prepare()
            return os.open(self.path, flags, FILE_MODE)

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._mutex:
            if self._pid != os.getpid():
                self._fd, self._count, self._pid = None, 0, os.getpid()
            if self._count == 0:
                if self._fd is None:
                    self._fd = self._open()
                fcntl.flock(self._fd, fcntl.LOCK_SH)  # waits out a rebuild, if one runs
            self._count += 1
        try:
            yield
        finally:
            with self._mutex:
                self._count -= 1
                if self._count == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._mutex:
            if self._fd is not None and self._count == 0 and self._pid == os.getpid():
                os.close(self._fd)
                self._fd = None
