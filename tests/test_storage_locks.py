"""Runs locked on their ledger files (format 2): no lock file per run, nothing left
behind by a lock that was taken for nothing, and a waiter never shares a lock with a
newcomer when the file it waited on was removed meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List

import pytest
from store_contract import make_run, record

from abstractrt_cli.errors import RunBusyError
from abstractrt_cli.storage.files import open_file_stores

HOLD_LOCK = Path(__file__).parent / "assets" / "storage" / "hold_lock.py"


@pytest.fixture
def stores(tmp_path: Path):
    rs, ls = open_file_stores(tmp_path / "data")
    yield rs, ls
    rs.close()


def files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                  and not p.name.startswith("index.sqlite3"))


def test_no_lock_files_and_no_locks_dir(tmp_path: Path, stores: Any) -> None:
    rs, ls = stores
    rs.save(make_run("r1"))
    with rs.lock("r1", timeout=1):
        ls.append(record("r1", 0))
    assert not (tmp_path / "data" / "locks").exists()
    assert not list((tmp_path / "data").rglob("*.lock")) or \
        [p.name for p in (tmp_path / "data").rglob("*.lock")] == ["rebuild.lock"]


def test_locking_a_run_that_does_not_exist_leaves_nothing(tmp_path: Path, stores: Any) -> None:
    rs, ls = stores
    rs.save(make_run("a1"))  # its shard directory exists
    before = files(tmp_path / "data")
    with rs.lock("a-ghost", timeout=1):
        assert Path(ls.path_of("a-ghost")).exists()  # the lock's file, while held
    assert files(tmp_path / "data") == before


def test_a_refused_command_on_a_run_without_ledger_leaves_nothing(tmp_path: Path,
                                                                  stores: Any) -> None:
    rs, ls = stores
    rs.save(make_run("r1"))
    with rs.lock("r1", timeout=1):
        ls.append(record("r1", 0))
    Path(ls.path_of("r1")).unlink()  # damage: the ledger is gone
    before = files(tmp_path / "data")
    with pytest.raises(ValueError):
        with rs.lock("r1", timeout=1):
            raise ValueError("the kernel refuses: the ledger does not match the checkpoint")
    assert files(tmp_path / "data") == before


def test_a_ledger_created_by_a_lock_stays_once_used(stores: Any) -> None:
    rs, ls = stores
    with rs.lock("solo", timeout=1):
        ls.append(record("solo", 0))
    assert [r["seq"] for r in ls.list("solo")] == [0]
    rs.save(make_run("born"))  # a new run saved without a lock: its ledger is created with it
    assert Path(ls.path_of("born")).read_bytes() == b""


def test_appends_under_the_lock_open_nothing(stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rs, ls = stores
    rs.save(make_run("r1"))
    opened: List[Any] = []
    real_open = os.open
    with rs.lock("r1", timeout=1):
        monkeypatch.setattr(os, "open", lambda *a, **k: (opened.append(a[0]),
                                                         real_open(*a, **k))[1])
        for n in range(3):
            ls.append(record("r1", n))
        monkeypatch.undo()
    assert opened == []  # through the lock's own descriptor
    assert [r["seq"] for r in ls.list("r1")] == [0, 1, 2]
    ls.append(record("r1", 3))  # without the lock: opens the file itself
    assert len(ls.list("r1")) == 4


def wait_until_open(pid: int, path: str) -> None:
    """Until process ``pid`` has ``path`` open (Linux: /proc), or skip."""
    fd_dir = Path(f"/proc/{pid}/fd")
    if not fd_dir.is_dir():
        pytest.skip("needs /proc to see the waiter waiting")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) == path:
                    return
            except OSError:
                pass
        time.sleep(0.005)
    pytest.fail(f"process {pid} never opened {path}")


def test_a_waiter_on_a_removed_lock_file_does_not_share_the_lock(tmp_path: Path,
                                                                 stores: Any) -> None:
    """A holds "ghost" (its lock created the ledger); B, another process, waits on that
    file; A lets go and removes the unused file; B must now hold the lock of the *new*
    file, so that A, asking again, finds the run busy."""
    rs, _ = stores
    data = tmp_path / "data"
    with rs.lock("ghost", timeout=1):
        proc = subprocess.Popen([sys.executable, str(HOLD_LOCK), str(data), "ghost"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        wait_until_open(proc.pid, rs.path_of("ghost").replace(".json", ".jsonl"))
        # B has the file open and waits on it (it prints "locked" once it holds it)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError):
            with rs.lock("ghost", timeout=0):
                pytest.fail("two holders of one run's lock")
    finally:
        proc.stdin.write("go\n")
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
    with rs.lock("ghost", timeout=1):
        pass
