"""Small file primitives the durable stores are built on.

- ``atomic_write``: write beside the target, fsync, ``os.replace``, fsync the directory,
  so a crash at any instant leaves either the old or the new file, never a torn one.
- ``fsync_dir``: make a directory entry (a created, renamed or removed file) durable.
- ``ensure_private_dir``: create directories 0700 (chmod them only if we created them).

Files are created 0600 (``os.open(..., 0o600)``): runs and ledgers hold whatever the
workflows put in them, so they are private to the user like the data dir itself.
"""

from __future__ import annotations

import itertools
import os
from typing import Optional, Tuple

FILE_MODE = 0o600
DIR_MODE = 0o700

# (inode, size, mtime_ns): enough to tell whether a file was replaced or changed since we
# last wrote or read it, at the cost of one stat.
FileIdent = Tuple[int, int, int]

_tmp_counter = itertools.count()

_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def ident_of(st: os.stat_result) -> FileIdent:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def fsync_dir(path: str) -> None:
    """fsync a directory so the entries created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def data_sync(fd: int) -> None:
    """fdatasync where it exists (data and size, not atime/mtime), else fsync."""
    sync = getattr(os, "fdatasync", None)
    (sync or os.fsync)(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def ensure_private_dir(path: str, *, fsync: bool = False) -> bool:
    """Create ``path`` (and missing parents) with mode 0700; True if this call created it.

    Only a directory we create is chmod'ed (the umask may have narrowed ``mkdir``'s mode
    further, never widened it, but an explicit chmod makes the result certain); an
    existing directory keeps the mode its owner chose.
    """
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise NotADirectoryError(f"{path} exists and is not a directory") from None
        return False
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        ensure_private_dir(parent, fsync=fsync)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            return False
    os.chmod(path, DIR_MODE)
    if fsync:
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    return True


def atomic_write(path: str, data: bytes, *, fsync: bool = True) -> FileIdent:
    """Replace ``path`` with ``data`` atomically; returns the new file's identity.

    The temp file lives in the same directory (``os.replace`` is only atomic within one
    file system) and starts with a dot, so directory scans for ``*.json`` never see it.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{next(_tmp_counter)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, FILE_MODE)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        fsync_dir(directory)
    return ident_of(st)


def read_file(path: str) -> Optional[Tuple[bytes, FileIdent]]:
    """The bytes of ``path`` and its identity, or None if it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        chunks = []
        remaining = st.st_size
        while True:
            chunk = os.read(fd, max(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks), ident_of(st)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
