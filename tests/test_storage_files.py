"""File stores beyond the shared contract: permissions, run ids, corruption, torn ledger
tails, head recovery, the query index under crashes, and what each operation costs."""

from __future__ import annotations

import json
import os
import stat
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from store_contract import T0, ids, make_run, record, until_wait, user_wait

from abstractrt_cli import Runtime
from abstractrt_cli.core.models import RunStatus, WaitReason
from abstractrt_cli.errors import (
    CorruptLedgerError,
    CorruptRunError,
    InvalidRunIdError,
    RunBusyError,
)
from abstractrt_cli.storage import FileLedgerStore, FileRunStore, open_file_stores
from abstractrt_cli.storage.files import ledger as ledger_mod
from abstractrt_cli.storage.files import runs as runs_mod
from abstractrt_cli.storage.chain import verify_ledger_chain
from abstractrt_cli.storage.files.index import RunIndex

sys.path.insert(0, str(Path(__file__).parent / "assets" / "storage"))
from workflows import counter_workflow  # noqa: E402  (the crash and concurrency tests' workflow)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def stores(data_dir: Path):
    rs, ls = open_file_stores(data_dir)
    yield rs, ls
    rs.close()


@pytest.fixture
def rs(stores):
    return stores[0]


@pytest.fixture
def ls(stores):
    return stores[1]


def fresh(data_dir: Path, **kw: Any):
    """Stores as a new process would open them."""
    return open_file_stores(data_dir, **kw)


def tree(root: Path) -> Dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode for p in sorted(root.rglob("*"))}


# ---------------------------------------------------------------------------- permissions


def test_data_dir_is_private_and_files_0600(tmp_path: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        data = tmp_path / "a" / "b" / "data"
        rs, ls = open_file_stores(data)
        run = make_run("r1", status=RunStatus.WAITING, waiting=user_wait())
        rs.save(run)
        with rs.lock("r1", timeout=1):
            ls.append(record("r1", 0))
        rs.list_runs(status=RunStatus.WAITING)
        rs.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    entries = tree(data)
    kinds = {Path(p).suffix for p in entries}
    assert {".json", ".jsonl", ".lock", ".sqlite3"} <= kinds, entries
    for path, mode in entries.items():
        want = 0o700 if stat.S_ISDIR(mode) else 0o600
        assert stat.S_IMODE(mode) == want, f"{path}: {oct(stat.S_IMODE(mode))}"


def test_existing_data_dir_keeps_its_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o750)
    FileRunStore(data).close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o750


# ---------------------------------------------------------------------------- run ids

BAD_IDS = ["../x", "a/b", "..", "", "x" * 129, ".hidden", "a..b", "-dash", "a\n", "a b",
           "a\\b", "/abs", "ü"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_run_ids_are_refused_before_touching_the_disk(
        data_dir: Path, rs: FileRunStore, ls: FileLedgerStore, bad: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rs.save(make_run("ok"))
    before = tree(data_dir.parent)

    def no_io(*a: Any, **k: Any) -> Any:
        raise AssertionError(f"touched the disk for run id {bad!r}")

    calls = [
        lambda: rs.load(bad),
        lambda: rs.save(make_run(bad)),
        lambda: rs.lock(bad, timeout=0).__enter__(),
        lambda: rs.path_of(bad),
        lambda: ls.append(record(bad, 0)),
        lambda: ls.list(bad),
        lambda: ls.head(bad),
        lambda: ls.records_since(bad, 0),
    ]
    for name in ("open", "stat", "mkdir", "replace", "scandir"):
        monkeypatch.setattr(os, name, no_io)
    for call in calls:
        with pytest.raises(InvalidRunIdError):
            call()
    monkeypatch.undo()
    assert tree(data_dir.parent) == before


def test_longest_valid_id_works(rs: FileRunStore) -> None:
    rid = "A" + "b._-9" * 25 + "xy"
    assert len(rid) == 128
    rs.save(make_run(rid))
    assert rs.load(rid).run_id == rid
    assert rs.match_prefix(rid[:10]) == [rid]


def test_prefix_with_odd_characters_matches_nothing(rs: FileRunStore) -> None:
    rs.save(make_run("abc"))
    assert rs.match_prefix("a%") == []
    assert rs.match_prefix("a*") == []
    assert rs.match_prefix("") == ["abc"]


# ---------------------------------------------------------------------------- corrupt runs


@pytest.mark.parametrize("mangle, why", [
    (lambda b: b[: len(b) // 2], "JSON"),
    (lambda b: b"", "empty"),
    (lambda b: b"hello world", "JSON"),
    (lambda b: b'{"run_id": "r1"}', "not a valid run"),
    (lambda b: b.replace(b'"running"', b'"sleeping"'), "status"),
    (lambda b: b"\xff\xfe" + b, "JSON"),
])
def test_corrupt_run_file_is_an_error_naming_the_file(rs: FileRunStore, mangle: Any,
                                                      why: str) -> None:
    rs.save(make_run("r1"))
    path = Path(rs.path_of("r1"))
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(CorruptRunError) as ei:
        rs.load("r1")
    assert str(path) in str(ei.value) and why in str(ei.value)
    assert ei.value.path == str(path)


def test_run_file_holding_another_run_is_corrupt(rs: FileRunStore) -> None:
    rs.save(make_run("r1"))
    rs.save(make_run("r2"))
    Path(rs.path_of("r2")).write_bytes(Path(rs.path_of("r1")).read_bytes())
    with pytest.raises(CorruptRunError, match="r1"):
        rs.load("r2")


def test_list_runs_reports_corrupt_runs(data_dir: Path, rs: FileRunStore) -> None:
    for i in range(3):
        rs.save(make_run(f"r{i}", created=T0 + timedelta(minutes=i)))
    path = Path(rs.path_of("r1"))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptRunError) as ei:
        rs.list_runs()
    assert str(path) in str(ei.value)
    seen: List[CorruptRunError] = []
    assert ids(rs.list_runs(on_corrupt=seen.append)) == ["r2", "r0"]
    assert [e.path for e in seen] == [str(path)]
    # Its fields are unknown now, so every query reports it — not only those it matched.
    seen.clear()
    rs2, _ = fresh(data_dir)
    assert rs2.list_runs(status=RunStatus.WAITING, on_corrupt=seen.append) == []
    assert [e.path for e in seen] == [str(path)]
    seen.clear()
    assert rs2.list_due_wait_until(now=T0, on_corrupt=seen.append) == []
    assert [e.path for e in seen] == [str(path)]
    rs2.close()


def test_fixed_run_file_stops_being_reported(rs: FileRunStore) -> None:
    run = make_run("r1")
    rs.save(run)
    path = Path(rs.path_of("r1"))
    good = path.read_bytes()
    path.write_bytes(b"{")
    seen: List[CorruptRunError] = []
    rs.list_runs(on_corrupt=seen.append)
    assert len(seen) == 1
    path.write_bytes(good)
    seen.clear()
    assert ids(rs.list_runs(status=RunStatus.WAITING, on_corrupt=seen.append)) == []
    assert ids(rs.list_runs(status=RunStatus.RUNNING, on_corrupt=seen.append)) == ["r1"]
    assert seen == []


def test_children_ignore_an_unrelated_corrupt_run_but_not_a_corrupt_child(
        rs: FileRunStore) -> None:
    rs.save(make_run("parent"))
    rs.save(make_run("kid", parent_run_id="parent"))
    rs.save(make_run("stranger"))
    Path(rs.path_of("stranger")).write_bytes(b"{")
    rs.list_runs(on_corrupt=lambda e: None)  # the stranger's fields are unknown from now on
    assert ids(rs.list_children(parent_run_id="parent")) == ["kid"]
    Path(rs.path_of("kid")).write_bytes(b"")
    with pytest.raises(CorruptRunError, match="kid"):
        rs.list_children(parent_run_id="parent")


# ---------------------------------------------------------------------------- ledgers


def append_n(ls: FileLedgerStore, run_id: str, n: int, start: int = 0) -> List[Dict[str, Any]]:
    return [ls.append(record(run_id, i)) for i in range(start, start + n)]


def test_garbage_line_in_the_middle_names_the_line(ls: FileLedgerStore) -> None:
    append_n(ls, "r1", 4)
    path = Path(ls.path_of("r1"))
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"this is not json"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CorruptLedgerError) as ei:
        ls.list("r1")
    assert ei.value.line == 2 and ei.value.path == str(path)
    assert "line 2" in str(ei.value) and str(path) in str(ei.value)
    # Reading back from the tail across that line names it too.
    _, ls2 = fresh(Path(ls.data_dir))
    with pytest.raises(CorruptLedgerError) as ei:
        ls2.records_since("r1", 0)
    assert ei.value.line == 2


def test_edited_record_fails_verification_naming_it(ls: FileLedgerStore) -> None:
    append_n(ls, "r1", 5)
    path = Path(ls.path_of("r1"))
    lines = path.read_text().splitlines()
    rec = json.loads(lines[3])
    rec["result"] = {"n": 3, "text": "forged"}
    lines[3] = json.dumps(rec, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    report = verify_ledger_chain(ls.list("r1"))
    assert not report["ok"] and report["first_bad_index"] == 3
    assert "record 3" in report["message"] and report["first_bad_step_id"] == "s3"


def test_deleted_line_fails_verification(ls: FileLedgerStore) -> None:
    append_n(ls, "r1", 5)
    path = Path(ls.path_of("r1"))
    lines = path.read_text().splitlines()
    del lines[2]
    path.write_text("\n".join(lines) + "\n")
    report = verify_ledger_chain(ls.list("r1"))
    assert not report["ok"] and report["first_bad_index"] == 2


def test_deleted_last_line_is_caught_by_the_checkpoint(data_dir: Path) -> None:
    rs, ls = fresh(data_dir)
    wf = counter_workflow(3)
    rt = Runtime(run_store=rs, ledger_store=ls, effect_handlers={"side": lambda run, eff: {}})
    rid = rt.start(workflow=wf)
    run = rt.tick(run_id=rid, workflow=wf)
    assert run.status == RunStatus.COMPLETED and run.ledger_count >= 4
    path = Path(ls.path_of(rid))
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    records = fresh(data_dir)[1].list(rid)
    assert verify_ledger_chain(records)["ok"]  # the chain alone cannot tell ...
    report = verify_ledger_chain(records, expected_count=run.ledger_count,
                                 expected_head=run.ledger_head)
    assert not report["ok"] and report["errors"][0]["type"] == "truncated"  # ... the checkpoint can
    rs.close()


@pytest.mark.parametrize("torn", [
    b'{"run_id":"r1","step_id":"s9","no',  # a write cut short
    b'{"run_id":"r1"}',  # whole JSON but no newline: the append never returned
    b"\x00\x00\x00\x00\n",  # zeros after a power loss, newline and all
])
def test_torn_last_line_is_ignored_then_repaired(data_dir: Path, ls: FileLedgerStore,
                                                 torn: bytes) -> None:
    stored = append_n(ls, "r1", 3)
    path = Path(ls.path_of("r1"))
    with open(path, "ab") as f:
        f.write(torn)
    for store in (ls, fresh(data_dir)[1]):
        assert store.list("r1") == stored
        assert store.head("r1") == (3, stored[-1]["record_hash"])
        assert store.records_since("r1", 2) == stored[2:]
    out = fresh(data_dir)[1].append(record("r1", 3))
    assert out["seq"] == 3 and out["prev_hash"] == stored[-1]["record_hash"]
    raw = path.read_bytes()
    assert torn not in raw and raw.endswith(b"\n") and raw.count(b"\n") == 4
    records = ls.list("r1")
    assert len(records) == 4
    assert verify_ledger_chain(records, expected_count=4, expected_head=out["record_hash"])["ok"]


def test_a_ledger_of_only_a_torn_line(data_dir: Path, ls: FileLedgerStore) -> None:
    path = Path(ls.path_of("r1"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"seq":0,"tor')
    assert ls.list("r1") == [] and ls.head("r1") == (0, None)
    out = ls.append(record("r1", 0))
    assert out["seq"] == 0 and out["prev_hash"] is None
    assert verify_ledger_chain(ls.list("r1"))["ok"]


def test_head_is_recovered_cheaply_in_a_new_process(data_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, fast = fresh(data_dir, fsync=False)
    stored = append_n(fast, "big", 3000)
    size = Path(fast.path_of("big")).stat().st_size
    assert size > 1_000_000
    read: List[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, n: int, off: int) -> bytes:
        read.append(n)
        return real_pread(fd, n, off)

    monkeypatch.setattr(os, "pread", counting_pread)
    _, ls = fresh(data_dir)
    assert ls.head("big") == (3000, stored[-1]["record_hash"])
    assert sum(read) <= 16384, read
    read.clear()
    assert ls.records_since("big", 2997) == stored[2997:]
    assert sum(read) <= 16384, read
    read.clear()
    _, ls = fresh(data_dir)
    assert ls.records_since("big", 2990) == stored[2990:]
    assert sum(read) <= 32768, read
    read.clear()
    out = ls.append(record("big", 3000))
    assert out["seq"] == 3000 and out["prev_hash"] == stored[-1]["record_hash"]
    assert sum(read) == 0  # the head came from the cache, re-validated by one fstat


def test_head_cache_notices_another_process_appending(data_dir: Path) -> None:
    _, a = fresh(data_dir)
    _, b = fresh(data_dir)  # "another process": its own cache
    append_n(a, "r1", 2)
    assert a.head("r1")[0] == 2
    other = b.append(record("r1", 2))
    assert a.head("r1") == (3, other["record_hash"])
    out = a.append(record("r1", 3))
    assert out["seq"] == 3 and out["prev_hash"] == other["record_hash"]
    assert [r["seq"] for r in a.records_since("r1", 2)] == [2, 3]
    report = verify_ledger_chain(b.list("r1"), expected_count=4, expected_head=out["record_hash"])
    assert report["ok"], report


# ---------------------------------------------------------------------------- the index


def index_rows(data_dir: Path) -> Dict[str, tuple]:
    idx = RunIndex(str(data_dir / "index" / "index.sqlite3"))
    try:
        return {r[0]: r[1:] for r in idx._query(
            "SELECT run_id, status, wait_reason, wait_key, dirty FROM runs")}
    finally:
        idx.close()


class Crash(Exception):
    """Stands for the process dying at this point."""


def test_save_without_index_changes_costs_one_file_write(
        rs: FileRunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run("r1", i=0)
    rs.save(run)
    run.status, run.waiting = RunStatus.WAITING, user_wait("k")
    rs.save(run)  # warm: the run's indexed fields are known
    index_calls: List[str] = []
    for name in ("put", "clear_dirty", "mark_dirty", "delete", "get", "_query", "_run"):
        real = getattr(RunIndex, name)
        monkeypatch.setattr(RunIndex, name, (lambda n, f: lambda self, *a, **k: (
            index_calls.append(n), f(self, *a, **k))[1])(name, real))
    writes: List[str] = []
    real_write = runs_mod.atomic_write
    monkeypatch.setattr(runs_mod, "atomic_write",
                        lambda fd, name, data, **k: (writes.append(name),
                                                     real_write(fd, name, data, **k))[1])
    for i in range(1, 19):  # checkpoints that change vars, not indexed fields
        run.vars["i"] = i
        rs.save(run)
    assert len(writes) == 18 and index_calls == []
    run.status, run.waiting = RunStatus.COMPLETED, None
    rs.save(run)  # the index only when an indexed field changes
    assert len(writes) == 19
    assert index_calls and all(c in ("get", "put", "clear_dirty", "_query", "_run")
                               for c in index_calls)
    assert index_calls.count("put") == 1
    assert rs.load("r1").vars["i"] == 18


def test_crash_between_index_and_run_file(data_dir: Path, rs: FileRunStore,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run("r1")
    rs.save(run)
    run.status, run.waiting = RunStatus.WAITING, user_wait("k")

    def die(*a: Any, **k: Any) -> None:
        raise Crash()

    monkeypatch.setattr(runs_mod, "atomic_write", die)
    with pytest.raises(Crash):
        rs.save(run)
    monkeypatch.undo()
    assert index_rows(data_dir)["r1"][-1] == 1  # left dirty, with the new fields
    rs2, _ = fresh(data_dir)  # a new process
    assert ids(rs2.list_runs(status=RunStatus.RUNNING)) == ["r1"]  # the file is the truth
    assert rs2.list_runs(status=RunStatus.WAITING) == []
    assert rs2.list_runs(wait_key="k") == []
    assert index_rows(data_dir)["r1"] == ("running", None, None, 0)  # repaired
    rs2.close()


def test_crash_between_run_file_and_index_cleanup(data_dir: Path, rs: FileRunStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run("r1")
    rs.save(run)
    rs.list_runs()  # repairs the new run's dirty row: the next change takes the long form
    assert index_rows(data_dir)["r1"][-1] == 0
    run.status, run.waiting = RunStatus.WAITING, until_wait("2030-01-01T00:00:00Z")

    def die(*a: Any, **k: Any) -> None:
        raise Crash()

    monkeypatch.setattr(RunIndex, "clear_dirty", die)
    with pytest.raises(Crash):
        rs.save(run)
    monkeypatch.undo()
    rs2, _ = fresh(data_dir)
    now = datetime(2031, 1, 1, tzinfo=timezone.utc)
    assert ids(rs2.list_due_wait_until(now=now)) == ["r1"]
    assert rs2.list_runs(status=RunStatus.RUNNING) == []
    assert index_rows(data_dir)["r1"] == ("waiting", "until", None, 0)
    rs2.close()


def test_new_run_row_is_dirty_and_its_first_change_skips_the_dirty_commit(
        data_dir: Path, rs: FileRunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run("r1")
    rs.save(run)
    assert index_rows(data_dir)["r1"] == ("running", None, None, 1)
    run.status, run.waiting = RunStatus.WAITING, until_wait("2030-01-01T00:00:00Z")
    puts: List[Tuple[bool, bool]] = []
    real_put = RunIndex.put

    def put(self: RunIndex, run_id: str, key: Any, *, dirty: bool, durable: bool) -> None:
        puts.append((dirty, durable))
        if not dirty:
            raise Crash()  # dies after the file write, before the clean row
        real_put(self, run_id, key, dirty=dirty, durable=durable)

    monkeypatch.setattr(RunIndex, "put", put)
    with pytest.raises(Crash):
        rs.save(run)
    monkeypatch.undo()
    assert puts == [(False, False)]  # no durable dirty commit: the row was dirty already
    assert index_rows(data_dir)["r1"] == ("running", None, None, 1)  # still dirty
    rs2, _ = fresh(data_dir)
    now = datetime(2031, 1, 1, tzinfo=timezone.utc)
    assert ids(rs2.list_due_wait_until(now=now)) == ["r1"]  # the file is the truth
    assert ids(rs2.list_runs(status=RunStatus.WAITING)) == ["r1"]
    assert index_rows(data_dir)["r1"] == ("waiting", "until", None, 0)  # repaired
    rs2.close()


def test_new_run_row_repaired_elsewhere_takes_the_long_form(
        data_dir: Path, rs: FileRunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's "left it dirty" hint is checked against the row: another process's
    query may have cleaned it, and then skipping the dirty phase would be unsafe."""
    run = make_run("r1")
    rs.save(run)
    rs2, _ = fresh(data_dir)
    assert ids(rs2.list_runs(status=RunStatus.RUNNING)) == ["r1"]
    assert index_rows(data_dir)["r1"] == ("running", None, None, 0)  # repaired by rs2
    run.status, run.waiting = RunStatus.WAITING, user_wait("k")
    real_put = RunIndex.put

    def put(self: RunIndex, run_id: str, key: Any, *, dirty: bool, durable: bool) -> None:
        if not dirty:
            raise Crash()
        real_put(self, run_id, key, dirty=dirty, durable=durable)

    monkeypatch.setattr(RunIndex, "put", put)
    monkeypatch.setattr(RunIndex, "clear_dirty", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        rs.save(run)
    monkeypatch.undo()
    assert index_rows(data_dir)["r1"] == ("waiting", "user", "k", 1)  # the long form's row
    assert ids(rs2.list_runs(wait_key="k")) == ["r1"]
    rs2.close()


def test_crash_while_creating_a_run_leaves_no_phantom(data_dir: Path, rs: FileRunStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def die(*a: Any, **k: Any) -> None:
        raise Crash()

    monkeypatch.setattr(runs_mod, "atomic_write", die)
    with pytest.raises(Crash):
        rs.save(make_run("ghost"))
    monkeypatch.undo()
    assert "ghost" in index_rows(data_dir)
    rs2, _ = fresh(data_dir)
    assert rs2.load("ghost") is None
    assert rs2.match_prefix("gh") == []
    assert rs2.list_runs(status=RunStatus.RUNNING) == []
    assert "ghost" not in index_rows(data_dir)
    rs2.close()


def test_stale_cache_in_another_process_does_not_skip_the_index(data_dir: Path) -> None:
    a, _ = fresh(data_dir)
    b, _ = fresh(data_dir)
    run = make_run("r1")
    a.save(run)
    assert a.load("r1") is not None  # a now "knows" r1 is running
    moved = b.load("r1")
    moved.status, moved.waiting = RunStatus.WAITING, user_wait("k")
    b.save(moved)
    a.save(run)  # a writes "running" again: its cached fields say nothing changed, but the
    #              file changed behind its back, so it must update the index
    assert ids(b.list_runs(status=RunStatus.RUNNING)) == ["r1"]
    assert index_rows(data_dir)["r1"] == ("running", None, None, 0)
    a.close()
    b.close()


def test_index_deleted_is_rebuilt(data_dir: Path, rs: FileRunStore) -> None:
    rs.save(make_run("r1", status=RunStatus.WAITING, waiting=user_wait("k")))
    rs.save(make_run("r2", parent_run_id="r1"))
    rs.save(make_run("r3", status=RunStatus.WAITING, waiting=until_wait("2030-01-01T00:00:00Z")))
    rs.close()
    for p in (data_dir / "index").iterdir():
        p.unlink()
    rs2, _ = fresh(data_dir)
    assert ids(rs2.list_runs(wait_key="k")) == ["r1"]
    assert ids(rs2.list_children(parent_run_id="r1")) == ["r2"]
    assert ids(rs2.list_due_wait_until(now=datetime(2031, 1, 1, tzinfo=timezone.utc))) == ["r3"]
    assert rs2.match_prefix("r") == ["r1", "r2", "r3"]
    assert (data_dir / "index" / "index.sqlite3").exists()
    rs2.close()


def test_index_deleted_under_an_open_store(data_dir: Path, rs: FileRunStore) -> None:
    rs.save(make_run("r1"))
    assert ids(rs.list_runs()) == ["r1"]
    for p in (data_dir / "index").iterdir():
        p.unlink()
    assert ids(rs.list_runs()) == ["r1"]
    rs.save(make_run("r2", status=RunStatus.COMPLETED))
    assert ids(fresh(data_dir)[0].list_runs(status=RunStatus.COMPLETED)) == ["r2"]


def test_corrupt_index_is_rebuilt(data_dir: Path, rs: FileRunStore) -> None:
    rs.save(make_run("r1", status=RunStatus.COMPLETED))
    rs.save(make_run("r2", created=T0 + timedelta(seconds=1)))
    rs.close()
    db = data_dir / "index" / "index.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 500)
    rs2, _ = fresh(data_dir)
    assert ids(rs2.list_runs(status=RunStatus.COMPLETED)) == ["r1"]
    assert ids(rs2.list_runs()) == ["r2", "r1"]
    assert list((data_dir / "index").glob("index.sqlite3.corrupt-*"))  # kept for a post-mortem
    rs2.close()


def test_run_files_restored_behind_the_index_need_a_rebuild(data_dir: Path,
                                                            rs: FileRunStore) -> None:
    run = make_run("r1", status=RunStatus.WAITING, waiting=user_wait("k"))
    rs.save(run)
    backup = Path(rs.path_of("r1")).read_bytes()
    run.status, run.waiting = RunStatus.COMPLETED, None
    rs.save(run)
    Path(rs.path_of("r1")).write_bytes(backup)  # a restore from backup, not via the store
    rs.save(make_run("r2"))
    Path(rs.path_of("r2")).write_bytes(b"{broken")
    stats = rs.rebuild_index()
    assert stats["runs"] == 1 and stats["corrupt"] == 1
    rs2, _ = fresh(data_dir)
    seen: List[CorruptRunError] = []
    assert ids(rs2.list_runs(wait_key="k", on_corrupt=seen.append)) == ["r1"]
    assert len(seen) == 1 and "r2" in seen[0].path
    rs2.close()


def test_rebuild_and_index_changing_saves_exclude_each_other(data_dir: Path,
                                                             rs: FileRunStore) -> None:
    import threading
    import time

    from abstractrt_cli.storage.files import locks

    run = make_run("r1")
    rs.save(run)
    assert rs.load("r1") is not None
    other, _ = fresh(data_dir)
    other.list_runs()  # its index is open and checked

    # A rebuild waits for a save that is changing a row and its file.
    in_save = threading.Event()

    def slow_save() -> None:
        with other._writers.shared():
            in_save.set()
            time.sleep(0.3)

    t = threading.Thread(target=slow_save)
    t.start()
    in_save.wait(5)
    t0 = time.monotonic()
    rs.rebuild_index()
    assert time.monotonic() - t0 >= 0.2
    t.join()

    # A save that changes indexed fields waits for a rebuild; one that changes none does not.
    in_rebuild = threading.Event()

    def slow_rebuild() -> None:
        with locks.held(str(data_dir / "index" / "rebuild.lock"), 5, RuntimeError):
            in_rebuild.set()
            time.sleep(0.3)

    t = threading.Thread(target=slow_rebuild)
    t.start()
    in_rebuild.wait(5)
    t0 = time.monotonic()
    run.vars["x"] = 1
    rs.save(run)  # same status: the hot path
    assert time.monotonic() - t0 < 0.2
    run.status = RunStatus.COMPLETED
    rs.save(run)
    assert time.monotonic() - t0 >= 0.2
    t.join()
    assert ids(other.list_runs(status=RunStatus.COMPLETED)) == ["r1"]
    other.close()


def test_queries_read_only_matching_runs(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rs, _ = fresh(data_dir, fsync=False)
    for i in range(600):
        if i % 100 == 7:
            w, st = until_wait(f"2030-01-01T00:{i % 60:02d}:00Z"), RunStatus.WAITING
        elif i % 3 == 0:
            w, st = user_wait(f"key-{i}"), RunStatus.WAITING
        else:
            w, st = None, RunStatus.COMPLETED
        rs.save(make_run(f"run-{i:04d}", status=st, waiting=w, created=T0 + timedelta(seconds=i)))
    rs.close()
    rs, _ = fresh(data_dir)
    loads: List[str] = []
    real_load = FileRunStore.load
    monkeypatch.setattr(FileRunStore, "load",
                        lambda self, rid: (loads.append(rid), real_load(self, rid))[1])
    due = rs.list_due_wait_until(now=datetime(2030, 6, 1, tzinfo=timezone.utc))
    assert len(due) == 6 and len(loads) == 6
    loads.clear()
    assert ids(rs.list_runs(wait_key="key-300")) == ["run-0300"] and len(loads) == 1
    loads.clear()
    assert len(rs.list_runs(limit=5)) == 5 and len(loads) == 5
    loads.clear()
    assert len(rs.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER)) == 198
    assert len(loads) == 198
    loads.clear()
    assert rs.match_prefix("run-01", limit=3) == ["run-0100", "run-0101", "run-0102"]
    assert loads == []
    rs.close()


def test_save_of_a_run_held_elsewhere_in_this_process_waits_for_it(
        data_dir: Path, rs: FileRunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run("r1")
    rs.save(run)
    other, _ = fresh(data_dir)
    monkeypatch.setattr(runs_mod, "SAVE_LOCK_TIMEOUT", 0.2)
    import threading

    done = threading.Event()
    errors: List[BaseException] = []

    def holder() -> None:
        with rs.lock("r1", timeout=1):
            done.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    try:
        run.status = RunStatus.COMPLETED  # an index change needs the run's lock
        try:
            other.save(run)
        except RunBusyError as exc:
            errors.append(exc)
    finally:
        done.set()
        t.join()
    assert len(errors) == 1
    other.save(run)
    assert rs.load("r1").status == RunStatus.COMPLETED
    other.close()


# ---------------------------------------------------------------------------- ledger tails


def test_first_append_needs_no_directory_fsync_of_its_own(
        rs: FileRunStore, ls: FileLedgerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    rs.save(make_run("r1"))  # creates r1's (empty) ledger beside its run file
    assert Path(ls.path_of("r1")).read_bytes() == b""
    assert Path(ls.path_of("r1")).parent == Path(rs.path_of("r1")).parent
    synced: List[int] = []
    monkeypatch.setattr(ledger_mod, "fsync_dir", synced.append)
    ls.append(record("r1", 0))
    assert synced == []  # the run's save made the ledger's directory entry durable
    ls.append(record("solo", 0))  # a ledger with no run file: it syncs its directory itself
    assert len(synced) == 1


def test_records_since_far_back_from_a_fresh_store(data_dir: Path) -> None:
    _, fast = fresh(data_dir, fsync=False)
    stored = append_n(fast, "big", 2000)
    _, ls = fresh(data_dir)
    assert ls.records_since("big", 100) == stored[100:]
    assert ls.records_since("big", 0) == stored
    assert ls.records_since("big", 1999) == stored[1999:]  # and the cache stayed small
    assert len(ls._tails["big"].lines) <= ledger_mod._TAIL_LINES


@pytest.mark.parametrize("chunk", [1, 7, 64, 8192])
def test_tail_reading_agrees_with_a_full_read(data_dir: Path, chunk: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Backward reads in chunks of any size, over records of any size, torn tail or not."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    monkeypatch.setattr(ledger_mod, "_TAIL_CHUNK", chunk)
    _, writer = fresh(data_dir, fsync=False)
    counter = iter(range(10**6))

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(sizes=st.lists(st.integers(0, 300), min_size=0, max_size=25),
           torn=st.sampled_from([b"", b"{", b'{"seq": 99', b"garbage\n", b"\n\n"]),
           since=st.integers(0, 30))
    def check(sizes: List[int], torn: bytes, since: int) -> None:
        rid = f"t{next(counter)}"
        for i, size in enumerate(sizes):
            writer.append(record(rid, i, error="x" * size))
        path = Path(writer.path_of(rid))
        if path.exists():
            with open(path, "ab") as f:
                f.write(torn)
        expect = writer.list(rid)
        _, reader = fresh(data_dir, fsync=False)
        want = (len(expect), expect[-1]["record_hash"]) if expect else (0, None)
        assert reader.head(rid) == want
        _, reader = fresh(data_dir, fsync=False)
        assert reader.records_since(rid, since) == expect[since:]
        if sizes:
            out = fresh(data_dir, fsync=False)[1].append(record(rid, len(sizes)))
            assert out["seq"] == len(sizes)
            assert verify_ledger_chain(writer.list(rid))["ok"]

    check()


def test_a_forked_child_opens_its_own_index_connection(data_dir: Path, rs: FileRunStore) -> None:
    rs.save(make_run("before-fork"))
    assert ids(rs.list_runs()) == ["before-fork"]
    pid = os.fork()
    if pid == 0:  # the child: use the inherited store, then leave without cleanup
        code = 1
        try:
            rs.save(make_run("from-child", status=RunStatus.COMPLETED))
            code = 0 if ids(rs.list_runs(status=RunStatus.COMPLETED)) == ["from-child"] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert sorted(ids(rs.list_runs())) == ["before-fork", "from-child"]
    rs.save(make_run("after-fork", status=RunStatus.COMPLETED))
    assert sorted(ids(rs.list_runs(status=RunStatus.COMPLETED))) == ["after-fork", "from-child"]


def test_interrupted_rebuild_is_redone(data_dir: Path, rs: FileRunStore,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        rs.save(make_run(f"r{i}", status=RunStatus.COMPLETED))
    calls = []
    real_load = FileRunStore.load

    def dying_load(self: FileRunStore, rid: str) -> Any:
        calls.append(rid)
        if len(calls) == 3:
            raise Crash()
        return real_load(self, rid)

    monkeypatch.setattr(FileRunStore, "load", dying_load)
    with pytest.raises(Crash):
        rs.rebuild_index()
    monkeypatch.undo()
    rs2, _ = fresh(data_dir)
    assert sorted(ids(rs2.list_runs(status=RunStatus.COMPLETED))) == [f"r{i}" for i in range(5)]
    idx = RunIndex(str(data_dir / "index" / "index.sqlite3"))
    assert idx.is_complete()
    idx.close()
    rs2.close()


def test_run_file_is_indented_json_people_can_read(rs: FileRunStore) -> None:
    run = make_run("r1", status=RunStatus.WAITING, waiting=user_wait(), note="héllo ✓",
                   deep={"a": {"b": [1, 2]}})
    rs.save(run)
    text = Path(rs.path_of("r1")).read_text(encoding="utf-8")
    assert text.startswith('{\n  "run_id": "r1",\n  "workflow_id": "wf",\n')
    assert '\n    "reason": "user",\n' in text  # waiting, one field a line
    assert "héllo ✓" in text  # not \\u-escaped
    assert json.loads(text) == run.to_jsonable()
