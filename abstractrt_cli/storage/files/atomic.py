"""Small file primitives the durable stores are built on.

- ``atomic_write``: write beside the target, fsync, ``os.replace``, fsync the directory,
  so a crash at any instant leaves either the old or the new file, never a torn one.
- ``read_file``: the bytes of a file and its identity.
- ``open_dir``: a directory descriptor, refusing a symlink.
- ``ensure_private_dir``: create directories 0700 (chmod them only if we created them).

Every file operation is relative to a directory descriptor (``dir_fd``) opened with
``O_NOFOLLOW`` and every file is opened with ``O_NOFOLLOW``: a symlink planted in the
data dir, as a file or as a directory, is refused (ELOOP), never followed, and nothing
is ever written through one. The same descriptors make the directory fsyncs cheap (no
open and close each time).

Files are created 0600: runs and ledgers hold whatever the workflows put in them, so
they are private to the user like the data dir itself.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from typing import Optional, Tuple

FILE_MODE = 0o600
DIR_MODE = 0o700

# (inode, size, mtime_ns): enough to tell whether a file was replaced or changed since we
# last wrote or read it, at the cost of one stat.
FileIdent = Tuple[int, int, int]

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

_tmp_counter = itertools.count()


def ident_of(st: os.stat_result) -> FileIdent:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def lstat_at(dir_fd: int, name: str) -> Optional[os.stat_result]:
    """``lstat`` of ``name`` in the directory, None if there is nothing there."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def is_symlink(st: Optional[os.stat_result]) -> bool:
    return st is not None and stat.S_ISLNK(st.st_mode)


def refuse_symlink(st: Optional[os.stat_result]) -> None:
    """Raise ELOOP (mapped to SymlinkRefusedError by the caller) for a symlink."""
    if is_symlink(st):
        raise OSError(errno.ELOOP, "is a symbolic link")


def open_dir(name: str, *, dir_fd: Optional[int] = None) -> int:
    """A descriptor of a directory; ELOOP for a symlink, ENOTDIR for anything else."""
    try:
        return os.open(name, os.O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, dir_fd=dir_fd)
    except NotADirectoryError:
        # With O_DIRECTORY, Linux says ENOTDIR for a symlink too: tell them apart.
        if dir_fd is not None and is_symlink(lstat_at(dir_fd, name)) or \
                dir_fd is None and os.path.islink(name):
            raise OSError(errno.ELOOP, "is a symbolic link", name) from None
        raise


def fsync_dir(dir_fd: int) -> None:
    """Make the entries created, renamed or removed in a directory durable."""
    os.fsync(dir_fd)


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
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory",
                                     path) from None
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
        fd = open_dir(os.path.dirname(os.path.abspath(path)))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return True


def make_private_dir_at(dir_fd: int, name: str, *, fsync: bool) -> bool:
    """``mkdir name`` (0700) inside a directory; True if created, False if it existed."""
    try:
        os.mkdir(name, DIR_MODE, dir_fd=dir_fd)
    except FileExistsError:
        return False
    os.chmod(name, DIR_MODE, dir_fd=dir_fd)  # see ensure_private_dir
    if fsync:
        os.fsync(dir_fd)
    return True


def atomic_write(dir_fd: int, name: str, data: bytes, *, fsync: bool = True) -> FileIdent:
    """Replace ``name`` in the directory with ``data`` atomically; the new file's identity.

    The temp file lives in the same directory (``os.replace`` is only atomic within one
    file system) and starts with a dot, so directory scans for ``*.json`` never see it.
    The caller has refused a symlink at ``name`` (a rename would replace the link, not
    follow it, but a symlinked run file is refused, not quietly turned into a file).
    """
    tmp = f".{name}.{os.getpid()}.{next(_tmp_counter)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 FILE_MODE, dir_fd=dir_fd)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        _unlink_quietly(dir_fd, tmp)
        raise
    if fsync:
        fsync_dir(dir_fd)
    return ident_of(st)


def create_new(dir_fd: int, name: str, data: bytes, *, fsync: bool = True) -> bool:
    """Create ``name`` with ``data``, atomically and only if nothing is there; False if
    something is (a file, or a symlink: never followed, never replaced).

    Written to a temp file first and then ``link``ed into place: the name appears whole
    or not at all, and ``link`` refuses an existing name in every process at once.
    """
    tmp = f".{name}.{os.getpid()}.{next(_tmp_counter)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                 FILE_MODE, dir_fd=dir_fd)
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            return False
    finally:
        _unlink_quietly(dir_fd, tmp)
    if fsync:
        fsync_dir(dir_fd)
    return True


def unlink_at(dir_fd: int, name: str) -> bool:
    """Remove ``name`` (a link itself, never what it points to); False if it was not there."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def read_file(dir_fd: int, name: str) -> Optional[Tuple[bytes, FileIdent]]:
    """The bytes of ``name`` and its identity, or None if it does not exist."""
    try:
        fd = os.open(name, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
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


def _unlink_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
