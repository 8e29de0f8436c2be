"""The data dir's format version: written, refused when newer, upgraded in place when
older, and a crash mid-upgrade (injected, and a real ``kill -9``) leaves it usable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, List

import pytest
from store_contract import ids, make_run, record, user_wait

from abstractrt_cli.core.models import RunStatus
from abstractrt_cli.errors import DataDirVersionError, StoreIOError
from abstractrt_cli.storage import open_stores
from abstractrt_cli.storage.files import FORMAT_VERSION, FileRunStore, open_file_stores
from abstractrt_cli.storage.files import version as version_mod


def fmt(data: Path) -> Any:
    path = data / "format.json"
    return json.loads(path.read_text())["format"] if path.exists() else None


def make_v1(data: Path, n_runs: int = 3) -> None:
    """A data dir as abstractrt 0.1 left it: no format file, a lock file per run."""
    rs, ls = open_file_stores(data)
    for i in range(n_runs):
        rid = f"{'abc'[i % 3]}run-{i}"
        rs.save(make_run(rid, status=RunStatus.WAITING, waiting=user_wait(f"k{i}")))
        with rs.lock(rid, timeout=1):
            ls.append(record(rid, 0))
    rs.close()
    (data / "format.json").unlink()
    for i in range(n_runs):
        rid = f"{'abc'[i % 3]}run-{i}"
        lock = data / "locks" / rid[0] / f"{rid}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock.write_bytes(b"")


def usable(data: Path, n_runs: int = 3) -> None:
    rs, ls = open_file_stores(data)
    try:
        assert len(rs.list_runs(status=RunStatus.WAITING)) == n_runs
        rid = "arun-0"
        assert rs.load(rid).waiting.wait_key == "k0"
        with rs.lock(rid, timeout=1):
            assert ls.append(record(rid, len(ls.list(rid))))["seq"] >= 1
    finally:
        rs.close()


def test_a_new_data_dir_gets_the_current_format(tmp_path: Path) -> None:
    data = tmp_path / "data"
    FileRunStore(data).close()
    assert fmt(data) == FORMAT_VERSION == 3
    assert (data / "format.json").stat().st_mode & 0o777 == 0o600
    assert open_stores(None, data, create=False).info()["format"] == FORMAT_VERSION


def test_a_newer_data_dir_is_refused_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rs = FileRunStore(data)
    rs.save(make_run("r1"))
    rs.close()
    (data / "format.json").write_text('{"format": 99}\n')
    before = sorted(p.name for p in data.rglob("*"))
    for opener in (lambda: FileRunStore(data), lambda: open_stores(None, data, create=False),
                   lambda: open_stores(None, data, create=True)):
        with pytest.raises(DataDirVersionError) as ei:
            opener()
        assert ei.value.found == 99 and ei.value.known == FORMAT_VERSION
        assert str(data) in str(ei.value) and ei.value.code == "store_too_new"
    assert sorted(p.name for p in data.rglob("*")) == before
    assert fmt(data) == 99


@pytest.mark.parametrize("text", ["", "{", '{"format": "2"}', '{"format": 0}', "[]"])
def test_a_damaged_format_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    data = tmp_path / "data"
    FileRunStore(data).close()
    (data / "format.json").write_text(text)
    with pytest.raises(StoreIOError) as ei:
        FileRunStore(data)
    assert ei.value.code == "bad_format_file" and "format.json" in str(ei.value)


def test_an_older_data_dir_is_upgraded_in_place(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_v1(data)
    assert fmt(data) is None and (data / "locks").is_dir()
    run_files = {p.name: p.read_bytes() for p in (data / "runs").rglob("*.json*")}
    usable(data)
    assert fmt(data) == FORMAT_VERSION
    assert not (data / "locks").exists()  # version 2 locks runs on their ledgers
    after = {p.name: p.read_bytes() for p in (data / "runs").rglob("*.json*")}
    assert {k: v for k, v in after.items() if k.endswith(".json")} == \
        {k: v for k, v in run_files.items() if k.endswith(".json")}


def test_a_failure_mid_upgrade_leaves_it_usable_and_the_next_open_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    make_v1(data, n_runs=6)
    real = version_mod._unlink_missing_ok
    calls: List[str] = []

    def dying(dir_fd: int, name: str) -> None:
        calls.append(name)
        if len(calls) == 3:
            raise OSError(5, "I/O error (injected)")
        real(dir_fd, name)

    monkeypatch.setattr(version_mod, "_unlink_missing_ok", dying)
    with pytest.raises(StoreIOError, match="injected"):
        FileRunStore(data)
    monkeypatch.undo()
    assert fmt(data) is None  # still version 1: the version is written last
    assert len(list((data / "locks").rglob("*.lock"))) == 4  # half done
    # Still readable as it is, by anything that reads version 1.
    rs = open_stores(None, data, create=False)
    assert len(rs.runs.list_runs()) == 6
    rs.close()
    assert fmt(data) == FORMAT_VERSION  # ... and that open finished the upgrade
    usable(data, n_runs=6)


_SLOW_UPGRADE = textwrap.dedent("""
    import sys, time
    from abstractrt_cli.storage.files import FileRunStore
    from abstractrt_cli.storage.files import version
    real = version._unlink_missing_ok
    def slow(dir_fd, name):
        print("unlinking", name, flush=True)
        time.sleep(0.2)
        real(dir_fd, name)
    version._unlink_missing_ok = slow
    FileRunStore(sys.argv[1])
    print("done", flush=True)
""")


def test_kill_9_mid_upgrade_leaves_it_usable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_v1(data, n_runs=6)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_UPGRADE, str(data)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("unlinking")
    assert proc.stdout.readline().startswith("unlinking")
    proc.kill()
    proc.wait(10)
    proc.stdout.close()
    assert fmt(data) is None and (data / "locks").exists()
    usable(data, n_runs=6)  # the next open finishes the upgrade
    assert fmt(data) == FORMAT_VERSION and not (data / "locks").exists()


def test_two_processes_opening_an_old_data_dir_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_v1(data, n_runs=30)
    script = "import sys; from abstractrt_cli.storage.files import FileRunStore; " \
             "print(len(FileRunStore(sys.argv[1]).list_runs()))"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(data)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out.strip() == "30", err
    assert fmt(data) == FORMAT_VERSION and not (data / "locks").exists()


def test_an_old_data_dir_this_process_cannot_write_is_read_as_it_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    make_v1(data)
    monkeypatch.setattr(os, "access", lambda path, mode, **k: mode != os.W_OK)
    real_open = os.open

    def ro_open(path: Any, flags: int, *a: Any, **k: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(30, "Read-only file system", path)
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(os, "unlink", lambda *a, **k: (_ for _ in ()).throw(
        OSError(30, "Read-only file system")))
    stores = open_stores(None, data, create=False)
    assert stores.info()["format"] == 1 and stores.info()["read_only"]
    assert sorted(ids(stores.runs.list_runs())) == ["arun-0", "brun-1", "crun-2"]
    monkeypatch.undo()
    assert fmt(data) is None and (data / "locks").is_dir()
