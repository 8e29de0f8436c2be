"""The store contract (tests/store_contract.py), run against every store we ship."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from store_contract import (
    LockHolder,
    StoreContract,
    StoreKit,
    ThreadLockHolder,
    ThreadSafetyContract,
)

from abstractrt_cli.storage import memory_stores, open_file_bundle

#: What every kit here can do beyond the basics (see store_contract.py).
PART_TWO = frozenset({"deadlines", "events", "snapshots", "artifacts", "audit", "logs", "admin"})

HOLD_LOCK = Path(__file__).parent / "assets" / "storage" / "hold_lock.py"


class MemoryKit(StoreKit):
    capabilities = PART_TWO

    def __init__(self) -> None:
        stores = memory_stores()
        super().__init__(stores.runs, stores.ledger, stores)

    def hold_lock_elsewhere(self, run_id: str) -> LockHolder:
        return ThreadLockHolder(self.run_store, run_id)

    def reopen(self) -> "StoreKit":
        return self  # nothing outlives the process: the same objects are the "reopened" ones


class ProcessLockHolder(LockHolder):
    """A real other process holding the lock (flock is per process, so a thread won't do)."""

    def __init__(self, data_dir: Path, run_id: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(HOLD_LOCK), str(data_dir), run_id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        assert line == "locked", f"lock holder said {line!r}"

    def release(self) -> None:
        if self._proc.returncode is None:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write("go\n")
            self._proc.stdin.close()
            self._proc.wait(10)
            self._proc.stdout.close()


class FileKit(StoreKit):
    capabilities = PART_TWO | {"corruptible", "tear_ledger"}
    fsync = True

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._opened = []
        stores = self._open()
        super().__init__(stores.runs, stores.ledger, stores)

    def _open(self):
        stores = open_file_bundle(self.data_dir, fsync=self.fsync)
        self._opened.append(stores)
        return stores

    def hold_lock_elsewhere(self, run_id: str) -> LockHolder:
        return ProcessLockHolder(self.data_dir, run_id)

    def reopen(self) -> "StoreKit":
        stores = self._open()
        return StoreKit(stores.runs, stores.ledger, stores)

    def corrupt_run(self, run_id: str) -> None:
        Path(self.run_store.path_of(run_id)).write_bytes(b'{"run_id": "torn')

    def tear_ledger(self, run_id: str, junk: bytes) -> None:
        with open(self.ledger_store.path_of(run_id), "ab") as f:
            f.write(junk)

    def close(self) -> None:
        for stores in self._opened:
            stores.close()


class TestMemoryStores(StoreContract, ThreadSafetyContract):
    @pytest.fixture
    def kit(self) -> StoreKit:
        return MemoryKit()


class TestFileStores(StoreContract, ThreadSafetyContract):
    @pytest.fixture
    def kit(self, tmp_path: Path):
        kit = FileKit(tmp_path / "data")
        yield kit
        kit.close()


class TestFileStoresWithoutFsync(StoreContract):
    """``fsync=False`` changes durability under power loss, never behaviour."""

    @pytest.fixture
    def kit(self, tmp_path: Path):
        class NoSyncKit(FileKit):
            fsync = False

        kit = NoSyncKit(tmp_path / "data")
        yield kit
        kit.close()
