"""Per-run locks between processes (``fcntl.flock``) and between threads of one process.

``flock`` locks belong to an *open file description*: two descriptors opened on the same
lock file in one process would lock each other out (or, worse, one ``LOCK_UN`` would free
the other's lock). So a process keeps one registry of the lock files it holds, keyed by
path and shared by every store instance: the registry's per-path mutex gives mutual
exclusion between threads, the ``flock`` between processes. A lock file is normally kept
after release; one that may be unlinked (the file store's run locks are its ledger
files, and an empty ledger it created for nothing is removed again) is unlinked only
while held, and every acquirer checks after its ``flock`` that the path still names the
file it locked (``verify``). Descriptors are closed on release, so holding nothing costs
no file descriptors.

``flock`` is released by the kernel when its holder dies, ``kill -9`` included: a crashed
process never leaves a run locked.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Tuple

from .atomic import FILE_MODE, O_CLOEXEC, O_NOFOLLOW


Opener = Callable[[], Tuple[int, bool]]  # -> (descriptor, True if it created the file)


class _Entry:
    __slots__ = ("mutex", "owner", "fd", "created", "appends")

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.owner: Optional[int] = None  # thread ident of the holder
        self.fd: Optional[int] = None
        self.created = False  # the holder's acquire created the file
        self.appends = False  # fd was opened with O_APPEND for writing


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


def _entry(key: str) -> _Entry:
    with _guard:
        e = _entries.get(key)
        if e is None:
            e = _entries[key] = _Entry()
        return e


def _path_opener(path: str) -> Opener:
    def open_it() -> Tuple[int, bool]:
        flags = os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC
        return os.open(path, flags, FILE_MODE), False
    return open_it


def held_by_current_thread(key: str) -> bool:
    e = _entries.get(key)
    return e is not None and e.owner == threading.get_ident()


def held_in_process(key: str) -> bool:
    e = _entries.get(key)
    return e is not None and e.owner is not None


def held_append_fd(key: str) -> Optional[int]:
    """The descriptor the current thread holds ``key`` with, if it was opened for
    appending (None otherwise): the ledger store appends through its run's lock."""
    e = _entries.get(key)
    if e is None or e.owner != threading.get_ident() or not e.appends:
        return None
    return e.fd


def keep_file(key: str) -> None:
    """The current thread's acquire created ``key``'s file, and it is to stay now (no
    ``created`` for ``release``'s callback)."""
    e = _entries.get(key)
    if e is not None and e.owner == threading.get_ident():
        e.created = False


def try_acquire(key: str, timeout: float, *, opener: Optional[Opener] = None,
                verify: Optional[Callable[[int], bool]] = None) -> bool:
    """Take the lock ``key`` (a path); False if it is still held elsewhere after ``timeout``.

    ``opener`` opens the file to ``flock`` (default: the path itself, created if
    missing). ``verify(fd)``, checked once the flock is ours, says whether the path
    still names that file: lock files that may be unlinked (see ``release``) need it,
    since a waiter may have opened the file just before it was unlinked, and would
    otherwise lock an orphan while a newcomer locks the new file. ``timeout <= 0``
    tries once. The same thread asking again gets False at once: the lock is not
    re-entrant, and waiting would only wait for ourselves.
    """
    e = _entry(key)
    me = threading.get_ident()
    if e.owner == me:
        return False
    opener = opener or _path_opener(key)
    deadline = time.monotonic() + max(timeout, 0.0)
    if timeout > 0:
        if not e.mutex.acquire(timeout=timeout):
            return False
    elif not e.mutex.acquire(blocking=False):
        return False
    locked = False
    try:
        while True:
            fd, created = opener()
            try:
                if not _flock_until(fd, deadline):
                    return False
                # (else) the flock is ours; is it still the lock file's?
                locked = verify is None or verify(fd)
            finally:
                if not locked:
                    os.close(fd)  # busy, failed, or an orphan unlinked meanwhile: retry
            if locked:
                break
    finally:
        if not locked:
            e.mutex.release()
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    e.appends = bool(flags & os.O_APPEND) and (flags & os.O_ACCMODE) != os.O_RDONLY
    e.fd, e.created, e.owner = fd, created, me
    return True


def _flock_until(fd: int, deadline: float) -> bool:
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.025)


def release(key: str, *, before_unlock: Optional[Callable[[int, bool], None]] = None) -> None:
    """Let go of ``key``. ``before_unlock(fd, created)`` runs while it is still held (the
    only moment its file may be unlinked: see ``verify`` in ``try_acquire``)."""
    e = _entries.get(key)
    if e is None or e.owner != threading.get_ident():
        raise RuntimeError(f"lock {key} is not held by this thread")
    fd, created = e.fd, e.created
    try:
        if fd is not None:
            try:
                if before_unlock is not None:
                    before_unlock(fd, created)
            finally:
                e.fd, e.owner, e.created = None, None, False
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)
        else:
            e.owner = None
    finally:
        e.mutex.release()


@contextmanager
def held(key: str, timeout: float, on_busy: Callable[[], BaseException], *,
         opener: Optional[Opener] = None, verify: Optional[Callable[[int], bool]] = None,
         before_unlock: Optional[Callable[[int, bool], None]] = None) -> Iterator[None]:
    """Hold the lock ``key`` for the ``with`` block; raise ``on_busy()`` if busy."""
    if not try_acquire(key, timeout, opener=opener, verify=verify):
        raise on_busy()
    try:
        yield
    finally:
        release(key, before_unlock=before_unlock)


class SharedFlock:
    """A shared ``flock`` on one file, held by any number of this process's threads at once.

    Index-changing saves hold it shared; an index rebuild takes the same file exclusively
    (through ``held``), so a rebuild never runs while a row and its run file are being
    changed together, and needs no per-run lock. One descriptor per instance, kept open;
    a forked child opens its own (unlocking the inherited one would unlock the parent).
    """

    def __init__(self, path: str, *, opener: Optional[Callable[[], int]] = None) -> None:
        self.path = path
        self._opener = opener
        self._mutex = threading.Lock()
        self._fd: Optional[int] = None
        self._count = 0
        self._pid = os.getpid()

    def _open(self) -> int:
        if self._opener is not None:
            return self._opener()
        return os.open(self.path, os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC, FILE_MODE)

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
