"""A directory of small files for this layer's stores: kept descriptor, atomic writes.

Built on ``abstractrt_cli.storage.files.atomic`` like the run store: every write goes to a
temp file beside the target, is fsynced and renamed over it, then the directory is
fsynced; nothing is followed through a symlink; the directory is created 0700, files
0600. Failures of the environment are ``StoreIOError`` naming the path.
"""

from __future__ import annotations

import os
import weakref
from typing import List, Optional

from ....storage.files.atomic import atomic_write, ensure_private_dir, fsync_dir, open_dir, read_file
from ....storage.files.oserrors import mapped


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class PrivateDir:
    """One directory, held open by descriptor for the life of the store."""

    def __init__(self, path: str, *, fsync: bool = True) -> None:
        self.path = os.path.abspath(path)
        self.fsync = fsync
        with mapped(self.path):
            ensure_private_dir(self.path, fsync=fsync)
            self._fd = open_dir(self.path)
        self._finalizer = weakref.finalize(self, _close, self._fd)

    def close(self) -> None:
        self._finalizer()

    def _where(self, name: str) -> str:
        return os.path.join(self.path, name)

    def write(self, name: str, data: bytes) -> None:
        with mapped(self._where(name)):
            atomic_write(self._fd, name, data, fsync=self.fsync)

    def read(self, name: str) -> Optional[bytes]:
        with mapped(self._where(name)):
            got = read_file(self._fd, name)
        return got[0] if got is not None else None

    def exists(self, name: str) -> bool:
        with mapped(self._where(name)):
            try:
                os.stat(name, dir_fd=self._fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
        return True

    def remove(self, name: str) -> bool:
        with mapped(self._where(name)):
            try:
                os.unlink(name, dir_fd=self._fd)
            except FileNotFoundError:
                return False
            if self.fsync:
                fsync_dir(self._fd)
        return True

    def names(self, suffix: str) -> List[str]:
        """Names ending in ``suffix``, sorted; temp files (a leading dot) left out."""
        with mapped(self.path):
            return sorted(n for n in os.listdir(self._fd) if n.endswith(suffix) and not n.startswith("."))
