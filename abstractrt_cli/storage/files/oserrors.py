"""What the environment refused, as errors a person can act on (never "internal error").

Every store operation maps the ``OSError`` it did not expect to a ``StoreIOError``
naming the path, saying what happened and what to do, with a stable code:
``permission_denied``, ``read_only``, ``disk_full``, ``is_a_directory``,
``not_a_directory``, or ``store_io`` for the rest. A symlink met by ``O_NOFOLLOW`` is a
``SymlinkRefusedError``. Errors of our own (``AbstractRTError``, some of which are
``OSError`` subclasses, such as ``RunBusyError``) pass through untouched.
"""

from __future__ import annotations

import errno
from contextlib import contextmanager
from typing import Iterator

from ...errors import AbstractRTError, StoreIOError, SymlinkRefusedError

#: errno values that mean "this data dir cannot be written (here, by us)".
CANNOT_WRITE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})

_WHY = {
    errno.EACCES: ("permission_denied", "permission denied: give this user read and write "
                   "access to the data dir (check its owner and mode)"),
    errno.EPERM: ("permission_denied", "operation not permitted: an immutable or append-only "
                  "file? (see lsattr; chattr -i undoes +i)"),
    errno.EROFS: ("read_only", "the file system is read-only: queries work, but changes need "
                  "a writable data dir"),
    errno.ENOSPC: ("disk_full", "no space left on the device: nothing was half-written; free "
                   "some space and try again"),
    errno.EDQUOT: ("disk_full", "disk quota exceeded: nothing was half-written; free some "
                   "space or raise the quota and try again"),
    errno.EISDIR: ("is_a_directory", "is a directory where a file belongs: move it away"),
    errno.ENOTDIR: ("not_a_directory", "a file is where a directory belongs: move it away"),
}


def store_error(exc: OSError, path: str) -> AbstractRTError:
    """The AbstractRTError for an OSError met at ``path``."""
    if isinstance(exc, AbstractRTError):
        return exc
    if exc.errno == errno.ELOOP:
        return SymlinkRefusedError(path)
    code, why = _WHY.get(exc.errno, ("store_io", exc.strerror or str(exc)))
    return StoreIOError(path, why, code=code)


def cannot_write(exc: BaseException) -> bool:
    """True for the errors that mean this process may read here but not write."""
    if isinstance(exc, StoreIOError):
        return exc.code in ("read_only", "permission_denied")
    return isinstance(exc, OSError) and exc.errno in CANNOT_WRITE


@contextmanager
def mapped(path: str) -> Iterator[None]:
    """Turn an unexpected OSError inside the block into ``store_error(exc, path)``."""
    try:
        yield
    except AbstractRTError:
        raise
    except OSError as exc:
        raise store_error(exc, path) from exc
