"""The file store in a hostile environment: symlinks planted in the data dir, read-only
and full disks, immutable files, no permission, directories where files belong.

Real mounts (a read-only bind mount, a tiny tmpfs) and ``chattr +i`` are used where the
machine allows (root on Linux); elsewhere those tests are skipped, and the simulated
read-only test (``os.open`` refusing writes) still runs.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from store_contract import T0, ids, make_run, record, until_wait, user_wait

from abstractrt_cli.core.models import RunStatus
from abstractrt_cli.errors import (
    AbstractRTError,
    CorruptRunError,
    StoreIOError,
    SymlinkRefusedError,
)
from abstractrt_cli.storage import open_stores
from abstractrt_cli.storage.files import FileLedgerStore, FileRunStore, open_file_stores

LATER = datetime(2031, 1, 1, tzinfo=timezone.utc)


def files_under(root: Path) -> Dict[str, bytes]:
    """Every file's bytes (and every directory, and symlink target) under ``root``."""
    out: Dict[str, bytes] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = b"-> " + os.readlink(p).encode()
        elif p.is_dir():
            out[rel + "/"] = b""
        elif not p.name.endswith(("-wal", "-shm")):
            out[rel] = p.read_bytes()
    return out


def populate(data: Path) -> None:
    rs, ls = open_file_stores(data)
    rs.save(make_run("w1", status=RunStatus.WAITING, waiting=user_wait("k1")))
    rs.save(make_run("t1", status=RunStatus.WAITING, waiting=until_wait("2030-06-01T00:00:00Z")))
    rs.save(make_run("d1", status=RunStatus.COMPLETED))
    with rs.lock("w1", timeout=1):
        ls.append(record("w1", 0))
        ls.append(record("w1", 1))
    rs.close()


def queries_work(data: Path) -> None:
    """Every query, on a fresh store of ``data``."""
    rs, ls = FileRunStore(data, create=False), FileLedgerStore(data, create=False)
    try:
        assert ids(rs.list_runs(status=RunStatus.WAITING)) == ["w1", "t1"] or \
            sorted(ids(rs.list_runs(status=RunStatus.WAITING))) == ["t1", "w1"]
        assert ids(rs.list_runs(wait_key="k1")) == ["w1"]
        assert ids(rs.list_due_wait_until(now=LATER)) == ["t1"]
        assert rs.load("d1").status == RunStatus.COMPLETED
        assert rs.match_prefix("w") == ["w1"]
        assert rs.earliest_due() == datetime(2030, 6, 1, tzinfo=timezone.utc)
        assert [r["seq"] for r in ls.list("w1")] == [0, 1]
        assert ls.head("w1")[0] == 2
        assert [r["seq"] for r in ls.records_since("w1", 1)] == [1]
        assert rs.info()["total"] == 3
    finally:
        rs.close()


def can_mount() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("mount")


@contextmanager
def read_only_view(src: Path, dst: Path) -> Iterator[Path]:
    """``src`` seen read-only at ``dst`` (a read-only bind mount)."""
    dst.mkdir()
    try:
        subprocess.run(["mount", "--bind", str(src), str(dst)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot bind-mount here: {exc}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], check=True,
                       capture_output=True)
        yield dst
    finally:
        subprocess.run(["umount", "-l", str(dst)], check=False, capture_output=True)


# ---------------------------------------------------------------------------- symlinks


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    populate(d)
    return d


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside.txt"
    target.write_bytes(b'{"seq": 0, "not yours"')  # one line, no newline: looks torn
    return target


def test_symlinked_ledger_is_refused_and_its_target_untouched(data: Path, outside: Path) -> None:
    rs, ls = open_file_stores(data)
    link = Path(ls.path_of("w1"))
    link.unlink()
    link.symlink_to(outside)
    before = outside.read_bytes()
    for call in (lambda: ls.append(record("w1", 2)), lambda: ls.list("w1"),
                 lambda: ls.head("w1"), lambda: ls.records_since("w1", 0),
                 lambda: rs.lock("w1", timeout=0).__enter__()):
        with pytest.raises(SymlinkRefusedError) as ei:
            call()
        assert str(link) in str(ei.value)
    assert outside.read_bytes() == before and link.is_symlink()
    rs.close()


def test_symlinked_run_file_is_refused_and_other_runs_still_listed(data: Path,
                                                                   tmp_path: Path) -> None:
    rs, _ = open_file_stores(data)
    target = tmp_path / "elsewhere.json"
    target.write_bytes(Path(rs.path_of("d1")).read_bytes())
    link = Path(rs.path_of("d1"))
    link.unlink()
    link.symlink_to(target)
    before = target.read_bytes()
    with pytest.raises(SymlinkRefusedError, match="d1"):
        rs.load("d1")
    run = make_run("d1", status=RunStatus.FAILED)
    with pytest.raises(SymlinkRefusedError):
        rs.save(run)
    assert link.is_symlink() and target.read_bytes() == before
    seen: List[CorruptRunError] = []
    rs2, _ = open_file_stores(data)
    assert sorted(ids(rs2.list_runs(on_corrupt=seen.append))) == ["t1", "w1"]
    assert [e.run_id for e in seen] == ["d1"] and "symbolic link" in str(seen[0])
    rs.close()
    rs2.close()


@pytest.mark.parametrize("name", ["index.sqlite3", "index.sqlite3-wal", "rebuild.lock"])
def test_symlinked_index_files_are_refused(data: Path, outside: Path, name: str) -> None:
    path = data / "index" / name
    if path.exists():
        path.unlink()
    path.symlink_to(outside)
    before = outside.read_bytes()
    rs = FileRunStore(data)
    with pytest.raises(SymlinkRefusedError) as ei:
        rs.list_runs()
        run = rs.load("w1")
        run.status, run.waiting = RunStatus.COMPLETED, None
        rs.save(run)  # an index-changing save takes rebuild.lock
    assert str(path) in str(ei.value)
    assert outside.read_bytes() == before
    rs.close()


@pytest.mark.parametrize("where", ["runs/w", "runs", "index"])
def test_symlinked_directories_are_refused(data: Path, tmp_path: Path, where: str) -> None:
    real = data / where
    moved = tmp_path / "moved"
    real.rename(moved)
    real.symlink_to(moved)
    before = files_under(moved)
    rs, ls = open_file_stores(data)
    with pytest.raises(SymlinkRefusedError) as ei:
        rs.load("w1")
        rs.list_runs()
    assert str(real) in str(ei.value)
    with pytest.raises(SymlinkRefusedError):
        rs.save(make_run("w2"))
        ls.append(record("w2", 0))
    assert files_under(moved) == before
    rs.close()


def test_a_symlinked_data_dir_itself_is_fine(data: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-data"
    link.symlink_to(data)
    queries_work(link)  # where the data dir lives is the user's choice


# ---------------------------------------------------------------------------- read-only


def test_queries_work_on_a_read_only_mount(data: Path, tmp_path: Path) -> None:
    if not can_mount():
        pytest.skip("needs root on Linux for a read-only bind mount")
    before = files_under(data)
    with read_only_view(data, tmp_path / "ro") as ro:
        queries_work(ro)
        rs, ls = open_file_stores(ro, create=False)
        assert rs.read_only
        for call in (lambda: rs.save(make_run("new")), lambda: ls.append(record("w1", 2)),
                     lambda: rs.lock("w1", timeout=0).__enter__()):
            with pytest.raises(StoreIOError) as ei:
                call()
            assert ei.value.code == "read_only" and str(ro) in str(ei.value)
        rs.close()
    assert files_under(data) == before


def test_queries_work_on_a_read_only_mount_without_an_index(data: Path, tmp_path: Path) -> None:
    if not can_mount():
        pytest.skip("needs root on Linux for a read-only bind mount")
    shutil.rmtree(data / "index")
    before = files_under(data)
    with read_only_view(data, tmp_path / "ro") as ro:
        queries_work(ro)  # an index built in memory from the run files
        stores = open_stores(None, ro, create=False)
        assert stores.info()["index"] == "memory"
        stores.close()
    assert files_under(data) == before


def test_queries_work_when_writes_are_refused(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wherever a real read-only mount is not possible: every write refused with EROFS."""
    before = files_under(data)
    real_open = os.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def ro_open(path: Any, flags: int, *a: Any, **k: Any) -> int:
        if flags & writes:
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, flags, *a, **k)

    def ro_mkdir(path: Any, *a: Any, **k: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(os, "mkdir", ro_mkdir)
    (data / "format.json").rename(data / "format.json.bak")  # as if from abstractrt 0.1
    try:
        queries_work(data)  # nor can it be upgraded: read at the version it has
        rs, _ = open_file_stores(data, create=False)
        assert rs.read_only and rs.info()["format"] == 1
        rs.close()
    finally:
        monkeypatch.undo()
        (data / "format.json.bak").rename(data / "format.json")
    assert files_under(data) == before


def test_a_query_never_creates_directories(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()  # exists, but holds nothing yet
    rs = FileRunStore(data, create=False)
    assert rs.list_runs() == [] and rs.load("abc") is None and rs.match_prefix("a") == []
    rs.close()
    assert not (data / "runs").exists()


# ---------------------------------------------------------------------------- full, immutable


@contextmanager
def tiny_tmpfs(where: Path, size: str = "256k") -> Iterator[Path]:
    where.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(where: Path) -> None:
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_full_disk_is_a_clear_error_and_nothing_is_half_written(tmp_path: Path) -> None:
    if not can_mount():
        pytest.skip("needs root on Linux for a small tmpfs")
    with tiny_tmpfs(tmp_path / "small") as mnt:
        data = mnt / "data"
        rs, ls = open_file_stores(data)
        run = make_run("r1", note="x")
        rs.save(run)
        with rs.lock("r1", timeout=1):
            ls.append(record("r1", 0))
        before = files_under(data)
        fill(mnt)
        run.vars["note"] = "y" * 200_000
        with pytest.raises(StoreIOError) as ei:
            rs.save(run)
        assert ei.value.code == "disk_full" and "nothing was half-written" in str(ei.value)
        with rs.lock("r1", timeout=1):
            with pytest.raises(StoreIOError) as ei:
                ls.append(record("r1", 1, error="z" * 200_000))
        assert ei.value.code == "disk_full"
        assert files_under(data) == before  # no temp file, no torn line
        (mnt / "filler").unlink()
        assert ls.append(record("r1", 1))["seq"] == 1  # and it goes on once there is room
        rs.close()


def chattr(flag: str, path: Path) -> None:
    try:
        subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"chattr {flag} is not possible here: {exc}")


def test_immutable_files_are_a_clear_error(data: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("needs root and chattr")
    rs, ls = open_file_stores(data)
    run_file, ledger = Path(rs.path_of("w1")), Path(ls.path_of("w1"))
    shard = run_file.parent
    chattr("+i", ledger)
    chattr("+i", shard)  # nothing in it can be created, renamed or removed
    try:
        before = files_under(data)
        run = rs.load("w1")
        run.vars["x"] = 1
        for call in (lambda: rs.save(run), lambda: rs.lock("w1", timeout=0).__enter__(),
                     lambda: ls.append(record("w1", 2))):
            with pytest.raises(StoreIOError) as ei:
                call()
            assert ei.value.code == "permission_denied" and "chattr" in str(ei.value)
        queries_work(data)
        assert files_under(data) == before
    finally:
        subprocess.run(["chattr", "-i", str(ledger)], check=False)
        subprocess.run(["chattr", "-i", str(shard)], check=False)
    rs.close()


_AS_NOBODY = """
import os, sys
from abstractrt_cli.errors import AbstractRTError
from abstractrt_cli.storage import open_stores
import abstractrt_cli.storage.files  # imported as root: the code is not what is refused
os.setgid(65534)
os.setuid(65534)
try:
    open_stores(None, sys.argv[1], create=False).runs.list_runs()
except AbstractRTError as exc:
    print(exc.code, exc, sep="|")
"""


def test_permission_denied_is_a_clear_error(data: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another user")
    out = subprocess.run([sys.executable, "-c", _AS_NOBODY, str(data)], capture_output=True,
                         text=True, timeout=60)
    code, _, message = out.stdout.strip().partition("|")
    assert (code, out.stderr) == ("permission_denied", ""), out
    assert str(data) in message and "permission denied" in message


# ---------------------------------------------------------------------------- wrong kinds


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("not a dir")
    for create in (False, True):
        with pytest.raises(StoreIOError) as ei:
            open_stores(None, path, create=create)
        assert ei.value.code == "not_a_directory" and str(path) in str(ei.value)
    assert path.read_text() == "not a dir"


def test_a_directory_where_a_run_file_belongs(data: Path) -> None:
    rs, ls = open_file_stores(data)
    Path(rs.path_of("d1")).unlink()
    Path(rs.path_of("d1")).mkdir()
    with pytest.raises(CorruptRunError, match="is a directory"):
        rs.load("d1")
    seen: List[CorruptRunError] = []
    rs2, _ = open_file_stores(data)
    assert sorted(ids(rs2.list_runs(on_corrupt=seen.append))) == ["t1", "w1"]
    assert [e.run_id for e in seen] == ["d1"]  # reported once
    seen.clear()
    assert ids(rs2.list_due_wait_until(now=LATER, on_corrupt=seen.append)) == ["t1"]
    assert [e.run_id for e in seen] == ["d1"]
    with pytest.raises(StoreIOError) as ei:
        rs.save(make_run("d1", status=RunStatus.FAILED))
    assert ei.value.code == "is_a_directory"
    rs.close()
    rs2.close()


def test_a_directory_where_a_ledger_or_the_index_belongs(data: Path) -> None:
    rs, ls = open_file_stores(data)
    ledger = Path(ls.path_of("d1"))
    ledger.unlink()
    ledger.mkdir()
    for call in (lambda: ls.list("d1"), lambda: ls.append(record("d1", 0)),
                 lambda: rs.lock("d1", timeout=0).__enter__()):
        with pytest.raises(StoreIOError) as ei:
            call()
        assert ei.value.code == "is_a_directory" and str(ledger) in str(ei.value)
    rs.close()
    index = data / "index" / "index.sqlite3"
    for p in (data / "index").glob("index.sqlite3*"):
        p.unlink()
    index.mkdir()
    with pytest.raises(AbstractRTError) as ei:
        FileRunStore(data).list_runs()
    assert ei.value.code == "is_a_directory" and str(index) in str(ei.value)


def test_queries_of_an_old_run_still_work_next_to_a_broken_one(data: Path) -> None:
    """A sanity check of the above from a clean state: the data set itself is fine."""
    queries_work(data)
    rs = FileRunStore(data)
    assert rs.load("w1").waiting.wait_key == "k1" and rs.load("t1").created_at == T0.isoformat()
    rs.close()
