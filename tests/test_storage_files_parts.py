"""The file store's parts of part two beyond the shared contract: permissions, symlinks,
torn and lost writes, the event index (what a lookup costs), several processes at once,
the format upgrade for deadlines, wake-ups, log compaction, run admin."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest
from store_contract import T0, ids, kept_event, log_entry, make_run, record, snapshot, user_wait

from abstractrt_cli.core.models import RunStatus, WaitReason, WaitState
from abstractrt_cli.errors import StoreCapabilityError, StoreIOError, SymlinkRefusedError
from abstractrt_cli.storage import open_file_bundle, open_stores
from abstractrt_cli.storage.base import LOG_CAP, Stores
from abstractrt_cli.storage.files import atomic as atomic_mod
from abstractrt_cli.storage.files import events as events_mod
from abstractrt_cli.storage.files import version as version_mod

EARLY = datetime(2000, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def stores(data: Path) -> Any:
    s = open_file_bundle(data)
    yield s
    s.close()


def fill_every_part(s: Stores) -> Dict[str, Any]:
    s.runs.save(make_run("r1", status=RunStatus.WAITING, waiting=user_wait("k")))
    with s.runs.lock("r1", timeout=5):
        s.ledger.append(record("r1", 0))
    s.events.put(kept_event(1))
    s.events.mark_received("ev-1", "r1")
    s.snapshots.put_snapshot(snapshot("r1", "snap"))
    meta = s.artifacts.put_artifact(b"bytes", run_id="r1")
    s.audit.put_prune_record({"run_id": "gone", "workflow_id": "wf", "status": "completed",
                              "ledger_count": 1, "ledger_head": None, "pruned_at": "x",
                              "actor_id": None})
    s.audit.beat({"worker_id": "w1", "beat_at": "x"})
    s.logs.append_log("r1", [log_entry(0, "hi\n")])
    s.runs.wake("r1")
    return meta


# ---------------------------------------------------------------------------- permissions


def test_every_new_file_is_0600_and_every_directory_0700(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        s = open_file_bundle(tmp_path / "data")
        fill_every_part(s)
        s.close()
    finally:
        os.umask(old)
    seen = set()
    for p in (tmp_path / "data").rglob("*"):
        mode = p.stat().st_mode & 0o777
        top = p.relative_to(tmp_path / "data").parts[0]
        seen.add(top)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    assert {"events", "snapshots", "artifacts", "audit", "logs", "wake"} <= seen


# ---------------------------------------------------------------------------- symlinks


def plant(path: Path, target: Path) -> None:
    if path.is_dir():
        import shutil

        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


SYMLINK_CASES: Dict[str, Tuple[str, Callable[[Stores, str], Any]]] = {
    "event file": ("events/e/ev-1.json", lambda s, ref: s.events.list_events()),
    "event file, put": ("events/e/ev-9.json", lambda s, ref: s.events.put(kept_event(9))),
    "receipts file": ("events/e/ev-1.recv", lambda s, ref: s.events.mark_received("ev-1", "r2")),
    "event shard": ("events/e", lambda s, ref: s.events.list_events()),
    "snapshot file": ("snapshots/r/r1/n.snap.json", lambda s, ref: s.snapshots.get_snapshot(
        "r1", "snap")),
    "snapshot dir": ("snapshots/r/r1", lambda s, ref: s.snapshots.list_snapshots(run_id="r1")),
    "snapshot dir, put": ("snapshots/r/r1", lambda s, ref: s.snapshots.put_snapshot(
        snapshot("r1", "other"))),
    "artifact blob": ("BLOB", lambda s, ref: s.artifacts.get_artifact(ref)),
    "artifact blob, put": ("BLOB", lambda s, ref: s.artifacts.put_artifact(b"bytes")),
    "artifact metadata": ("BLOB.meta.json", lambda s, ref: s.artifacts.artifact_meta(ref)),
    "artifacts of a run": ("artifacts/runs/r/r1.jsonl", lambda s, ref: s.artifacts.list_artifacts(
        run_id="r1")),
    "prune records": ("audit/pruned.jsonl", lambda s, ref: s.audit.list_prune_records()),
    "prune records, append": ("audit/pruned.jsonl", lambda s, ref: s.audit.put_prune_record(
        {"run_id": "x"})),
    "heartbeat": ("audit/heartbeats/w1.json", lambda s, ref: s.audit.beat({"worker_id": "w1"})),
    "heartbeats dir": ("audit/heartbeats", lambda s, ref: s.audit.heartbeats()),
    "log": ("logs/r/r1.jsonl", lambda s, ref: s.logs.append_log("r1", [log_entry(1, "x")])),
    "log, read": ("logs/r/r1.jsonl", lambda s, ref: s.logs.read_log("r1")),
    "wake file": ("wake", lambda s, ref: s.runs.wake("r1")),
    "wake file, listen": ("wake", lambda s, ref: s.runs.listen(0)),
}


@pytest.mark.parametrize("case", sorted(SYMLINK_CASES))
def test_symlinks_are_refused_and_their_targets_untouched(data: Path, tmp_path: Path,
                                                          case: str) -> None:
    s = open_file_bundle(data)
    meta = fill_every_part(s)
    hx = meta["ref"][7:]
    where, call = SYMLINK_CASES[case]
    where = where.replace("BLOB", f"artifacts/sha256/{hx[:2]}/{hx}")
    s.close()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not touch")
    target = outside if (data / where).is_dir() else outside / "secret"
    plant(data / where, target)
    fresh = open_file_bundle(data)
    try:
        with pytest.raises(SymlinkRefusedError) as ei:
            call(fresh, meta["ref"])
        assert ei.value.code == "symlink_refused"
    finally:
        fresh.close()
    assert (outside / "secret").read_bytes() == b"do not touch"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


# ---------------------------------------------------------------------------- atomicity


def failing_writes(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """The disk fills up ``after`` bytes into the next write (then every one fails)."""
    real = atomic_mod.write_all

    def write_all(fd: int, data: bytes) -> None:
        real(fd, data[:after])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_mod, "write_all", write_all)


def test_a_write_cut_short_leaves_nothing_behind(stores: Stores, data: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    stores.runs.save(make_run("r1"))
    before = sorted(str(p.relative_to(data)) for p in data.rglob("*"))
    failing_writes(monkeypatch, after=3)
    for call in (lambda: stores.snapshots.put_snapshot(snapshot("r1", "snap")),
                 lambda: stores.artifacts.put_artifact(b"some bytes", run_id="r1"),
                 lambda: stores.events.put(kept_event(1)),
                 lambda: stores.audit.beat({"worker_id": "w1"})):
        with pytest.raises(StoreIOError) as ei:
            call()
        assert ei.value.code == "disk_full"
    monkeypatch.undo()
    after = sorted(str(p.relative_to(data)) for p in data.rglob("*")
                   if not p.is_dir() and not p.name.endswith(("-wal", "-shm")))
    assert all(not name.rsplit("/", 1)[-1].startswith(".") for name in after), after  # no temps
    assert stores.snapshots.list_snapshots() == [] and stores.events.list_events() == []
    assert stores.artifacts.list_artifacts() == [] and stores.audit.heartbeats() == []
    assert [p for p in after if p not in before and not p.startswith("index")] == []
    # And once there is room again, each works.
    stores.snapshots.put_snapshot(snapshot("r1", "snap"))
    assert stores.artifacts.get_artifact(stores.artifacts.put_artifact(b"x")["ref"]) == b"x"
    stores.events.put(kept_event(1))
    assert [e.event_id for e in stores.events.list_events()] == ["ev-1"]


def test_a_damaged_blob_is_an_error_and_the_next_put_repairs_it(stores: Stores) -> None:
    meta = stores.artifacts.put_artifact(b"original bytes", run_id="r1")
    path = Path(stores.artifacts.path_of(meta["ref"]))
    path.write_bytes(b"damaged bytes!")  # same size
    with pytest.raises(StoreIOError) as ei:
        stores.artifacts.get_artifact(meta["ref"])
    assert ei.value.code == "artifact_corrupt" and str(path) in str(ei.value)
    stores.artifacts.put_artifact(b"original bytes")
    assert stores.artifacts.get_artifact(meta["ref"]) == b"original bytes"


def test_torn_receipts_line_and_a_lost_receipt_row(stores: Stores, data: Path) -> None:
    ev = stores.events
    ev.put(kept_event(1))
    ev.put(kept_event(2, at=1))
    ev.mark_received("ev-1", "r1")
    with open(data / "events" / "e" / "ev-1.recv", "ab") as f:
        f.write(b'{"run_id":"r')  # a crash mid-append
    ev.mark_received("ev-1", "r2")
    assert ev.list_events()[0].received_by == ["r1", "r2"]
    # A crash after the receipt line but before its row: the line is the truth.
    with sqlite3.connect(data / "index" / "index.sqlite3") as db:
        db.execute("DELETE FROM event_receipts")
    got = ev.oldest_unreceived("order:1", run_id="r1", emitted_after=EARLY, now=T0)
    assert got.event_id == "ev-2"
    with sqlite3.connect(data / "index" / "index.sqlite3") as db:
        assert db.execute("SELECT event_id, run_id FROM event_receipts").fetchall() == [
            ("ev-1", "r1")]  # repaired by the reader


def test_a_rebuilt_index_knows_every_event_and_receipt(stores: Stores, data: Path) -> None:
    ev = stores.events
    for n in range(5):
        ev.put(kept_event(n, key=f"k{n % 2}", at=n))
    ev.mark_received("ev-2", "r1")
    (data / "events" / "e" / "ev-3.json").write_text("{not json")
    stores.close()
    for p in (data / "index").glob("index.sqlite3*"):
        p.unlink()
    fresh = open_file_bundle(data)
    try:
        stats = fresh.reindex()
        assert stats["events"] == 4 and stats["events_corrupt"] == 1
        assert fresh.events.oldest_unreceived("k0", run_id="r1", emitted_after=EARLY,
                                              now=T0).event_id == "ev-0"
        assert fresh.events.oldest_unreceived("k0", run_id="r1", emitted_after=T0,
                                              now=T0).event_id == "ev-4"  # ev-2 received
        with pytest.raises(StoreIOError) as ei:
            fresh.events.list_events()  # the unreadable one is reported, never skipped
        assert ei.value.code == "corrupt_event" and "ev-3.json" in str(ei.value)
    finally:
        fresh.close()


# ---------------------------------------------------------------------------- event index cost


def count_vm_steps(stores: Stores, fn: Callable[[], Any]) -> int:
    conn = stores.runs._index.connect()
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 1)
    return steps[0]


def test_an_event_lookup_costs_what_its_key_holds(stores: Stores,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ev = stores.events
    for n in range(3):
        ev.put(kept_event(n, key="mine", at=n))
    ev.mark_received("ev-0", "r1")

    def lookup() -> Any:
        return ev.oldest_unreceived("mine", run_id="r1", emitted_after=EARLY, now=T0)

    reads: List[str] = []
    real_read = events_mod.read_file
    monkeypatch.setattr(events_mod, "read_file",
                        lambda fd, name: reads.append(name) or real_read(fd, name))
    assert lookup().event_id == "ev-1"
    assert reads == ["ev-1.json", "ev-1.recv"]  # one event's files, nothing else
    few = count_vm_steps(stores, lookup)
    # 3,000 events of other keys (and receipts of them) change nothing for this key.
    rows = [(f"other-{i}", f"key-{i % 50}", i, 10 ** 18) for i in range(3000)]
    stores.runs._with_index(lambda idx: idx.put_events(rows))
    stores.runs._with_index(lambda idx: idx.add_receipts([(f"other-{i}", "r1") for i in range(3000)]))
    many = count_vm_steps(stores, lookup)
    assert many <= few + 5, (few, many)
    plan = " / ".join(stores.runs._with_index(lambda idx: idx.query_plan(
        "SELECT e.event_id, e.emitted_us FROM events e WHERE e.key = ? AND e.emitted_us > ? "
        "AND e.expires_us > ? AND NOT EXISTS (SELECT 1 FROM event_receipts r WHERE "
        "r.event_id = e.event_id AND r.run_id = ?) ORDER BY e.emitted_us, e.event_id LIMIT 8",
        ("mine", 0, 0, "r1"))))
    assert "USING INDEX events_key" in plan or "USING COVERING INDEX events_key" in plan, plan
    assert "SCAN" not in plan, plan


# ---------------------------------------------------------------------------- processes

_EVENTS_WORKER = textwrap.dedent("""
    import json, random, sys, time
    from datetime import datetime, timedelta, timezone
    from abstractrt_cli.core.models import KeptEvent
    from abstractrt_cli.errors import RunBusyError
    from abstractrt_cli.storage import open_file_bundle

    data, me, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    runs = sys.argv[5:]
    s = open_file_bundle(data)
    early = datetime(2000, 1, 1, tzinfo=timezone.utc)
    while not __import__("os").path.exists(go):
        time.sleep(0.01)
    got = []
    for j in range(n):
        now = datetime.now(timezone.utc)
        s.events.put(KeptEvent(event_id=f"ev-{me}-{j}", key="K", payload={"j": j},
                               emitted_at=now.isoformat(),
                               expires_at=(now + timedelta(days=1)).isoformat()))
        for rid in random.sample(runs, len(runs)):
            try:
                with s.runs.lock(rid, timeout=0):
                    while True:
                        ev = s.events.oldest_unreceived("K", run_id=rid, emitted_after=early,
                                                        now=datetime.now(timezone.utc))
                        if ev is None:
                            break
                        s.events.mark_received(ev.event_id, rid)
                        got.append([rid, ev.event_id])
            except RunBusyError:
                pass
    print(json.dumps(got))
""")


@pytest.mark.slow
def test_emitters_and_receivers_in_several_processes(data: Path, tmp_path: Path) -> None:
    s = open_file_bundle(data)
    runs = [f"{c}run" for c in "abcde"]
    for rid in runs:
        s.runs.save(make_run(rid, status=RunStatus.WAITING,
                             waiting=WaitState(reason=WaitReason.EVENT, wait_key="K")))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _EVENTS_WORKER, str(data), str(i), "12",
                               str(go), *runs], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(3)]
    go.touch()
    delivered: List[Tuple[str, str]] = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        delivered += [tuple(x) for x in json.loads(out)]
    for rid in runs:  # whatever was left for a run busy at the time
        with s.runs.lock(rid, timeout=5):
            while True:
                ev = s.events.oldest_unreceived("K", run_id=rid, emitted_after=EARLY,
                                                now=datetime.now(timezone.utc))
                if ev is None:
                    break
                s.events.mark_received(ev.event_id, rid)
                delivered.append((rid, ev.event_id))
    events = s.events.list_events()
    assert len(events) == 36
    assert len(delivered) == len(set(delivered)), "an event reached a run twice"
    assert set(delivered) == {(r, e.event_id) for r in runs for e in events}  # none lost
    for e in events:
        assert sorted(e.received_by) == sorted(runs)  # each receipt once, none lost
    s.close()


_LOG_WORKER = textwrap.dedent("""
    import sys
    from abstractrt_cli.storage import open_file_bundle
    s = open_file_bundle(sys.argv[1])
    me, n = sys.argv[2], int(sys.argv[3])
    for i in range(n):
        s.logs.append_log("run-1", [{"at": "x", "node_id": me, "effect_seq": i, "stream": "stdout",
                                     "text": f"{me}:{i}:" + "x" * 20000}])
""")


@pytest.mark.slow
def test_logs_from_two_processes_lose_nothing_to_compaction(data: Path) -> None:
    s = open_file_bundle(data)
    procs = [subprocess.Popen([sys.executable, "-c", _LOG_WORKER, str(data), me, "150"],
                              stderr=subprocess.PIPE, text=True) for me in ("p", "q")]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    kept, dropped = s.logs.read_log("run-1")
    size = len(kept[0]["text"].encode())
    written = sum(len(f"{me}:{i}:".encode()) + 20000 for me in "pq" for i in range(150))
    assert sum(len(e["text"].encode()) for e in kept) + dropped == written
    assert sum(len(e["text"].encode()) for e in kept) <= LOG_CAP
    for me in "pq":  # each writer's entries in its own order
        seqs = [e["effect_seq"] for e in kept if e["node_id"] == me]
        assert seqs == sorted(seqs)
    assert kept[-1]["effect_seq"] == 149 and size > 0  # the newest are the ones kept
    assert os.path.getsize(data / "logs" / "r" / "run-1.jsonl") < 3 * LOG_CAP
    s.close()


# ---------------------------------------------------------------------------- format 3


def test_a_format_2_data_dir_gets_its_deadlines_indexed(data: Path) -> None:
    s = open_file_bundle(data)
    wait = WaitState(reason=WaitReason.USER, wait_key="k", prompt="ok?",
                     deadline="2030-01-01T00:00:00Z", on_timeout="fail")
    s.runs.save(make_run("late", status=RunStatus.WAITING, waiting=wait))
    s.runs.save(make_run("plain", status=RunStatus.WAITING, waiting=user_wait()))
    s.close()
    # As format 2 left it: the deadline not in the index.
    with sqlite3.connect(data / "index" / "index.sqlite3") as db:
        db.execute("UPDATE runs SET until_us = NULL")
    (data / "format.json").write_text('{"format": 2}\n')
    fresh = open_file_bundle(data)
    try:
        assert json.loads((data / "format.json").read_text()) == {"format": 3}
        now = datetime(2030, 6, 1, tzinfo=timezone.utc)
        assert ids(fresh.runs.list_due_wait_until(now=now)) == ["late"]
        assert fresh.runs.earliest_due() == datetime(2030, 1, 1, tzinfo=timezone.utc)
        # ... and the rows are true again (repaired, clean).
        with sqlite3.connect(data / "index" / "index.sqlite3") as db:
            rows = dict(db.execute("SELECT run_id, dirty FROM runs").fetchall())
        assert rows == {"late": 0, "plain": 0}
    finally:
        fresh.close()


def test_the_upgrade_step_is_idempotent(data: Path) -> None:
    s = open_file_bundle(data)
    s.runs.save(make_run("w", status=RunStatus.WAITING, waiting=user_wait()))
    layout = s.runs._layout
    version_mod._v2_to_v3(layout)
    version_mod._v2_to_v3(layout)
    assert ids(s.runs.list_runs(status=RunStatus.WAITING)) == ["w"]
    s.close()


# ---------------------------------------------------------------------------- wake-ups

_WAKER = textwrap.dedent("""
    import sys
    from abstractrt_cli.storage import open_stores
    open_stores(None, sys.argv[1], create=True).wake("some-run")
""")


def test_wake_from_another_process_ends_a_listen(stores: Stores, data: Path) -> None:
    assert stores.listen(0) is False  # starts listening
    subprocess.run([sys.executable, "-c", _WAKER, str(data)], check=True, timeout=60)
    assert stores.listen(30) is True
    assert stores.listen(0) is False  # that one was taken
    stores.wake()
    stores.wake()
    assert stores.listen(0) is True and stores.listen(0.3) is False


def test_memory_wake_and_listen() -> None:
    from abstractrt_cli.storage import memory_stores

    s = memory_stores()
    assert s.listen(0) is False
    s.wake("x")
    assert s.listen(5) is True and s.listen(0) is False


# ---------------------------------------------------------------------------- admin


def test_delete_run_needs_the_lock_and_removes_everything(stores: Stores, data: Path) -> None:
    stores.runs.save(make_run("r1", status=RunStatus.WAITING, waiting=user_wait("k")))
    with stores.runs.lock("r1", timeout=5):
        stores.ledger.append(record("r1", 0))
    with pytest.raises(RuntimeError, match="lock"):
        stores.runs.delete_run("r1")
    with stores.runs.lock("r1", timeout=5):
        stores.runs.delete_run("r1")
    assert sorted(p.name for p in (data / "runs" / "r").iterdir()) == []
    with sqlite3.connect(data / "index" / "index.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    fresh = open_stores(None, data, create=False)
    assert fresh.runs.load("r1") is None and fresh.runs.list_runs() == []
    fresh.close()


def test_open_stores_without_a_data_dir_has_every_part_empty(tmp_path: Path) -> None:
    s = open_stores(None, tmp_path / "nothing", create=False)
    assert s.kind == "files" and s.events.list_events() == []
    assert s.snapshots.list_snapshots() == [] and s.artifacts.list_artifacts() == []
    assert s.audit.list_prune_records() == [] and s.logs.read_log("r") == ([], 0)
    assert list(s.runs.iter_run_ids()) == []
    assert {"events", "snapshots", "artifacts", "audit", "logs", "admin"} <= s.capabilities
    # What would keep something is refused, never accepted and lost with the process.
    for write in (lambda: s.events.put(kept_event(1)),
                  lambda: s.snapshots.put_snapshot(snapshot("r1", "x")),
                  lambda: s.artifacts.put_artifact(b"x"), lambda: s.audit.beat({"worker_id": "w"}),
                  lambda: s.audit.put_prune_record({"run_id": "r"}),
                  lambda: s.logs.append_log("r", [log_entry(0, "x")])):
        with pytest.raises(StoreCapabilityError, match="does not exist"):
            write()
    assert s.events.prune(now=T0) == 0 and s.snapshots.delete_snapshots("r") == 0
    assert not (tmp_path / "nothing").exists()


def test_queries_of_the_new_parts_on_a_read_only_mount(data: Path, tmp_path: Path) -> None:
    from test_storage_environment import can_mount, files_under, read_only_view

    if not can_mount():
        pytest.skip("needs root on Linux for a read-only bind mount")
    s = open_file_bundle(data)
    meta = fill_every_part(s)
    s.close()
    before = files_under(data)
    with read_only_view(data, tmp_path / "ro") as ro:
        r = open_stores(None, ro, create=False)
        try:
            assert [e.received_by for e in r.events.list_events()] == [["r1"]]
            assert r.events.oldest_unreceived("order:1", run_id="r2", emitted_after=EARLY,
                                              now=T0).event_id == "ev-1"
            assert [x["name"] for x in r.snapshots.list_snapshots()] == ["snap"]
            assert r.artifacts.get_artifact(meta["ref"]) == b"bytes"
            assert [m["ref"] for m in r.artifacts.list_artifacts(run_id="r1")] == [meta["ref"]]
            assert r.logs.read_log("r1")[0][0]["text"] == "hi\n"
            assert len(r.audit.list_prune_records()) == 1 and len(r.audit.heartbeats()) == 1
            r.runs.wake("r1")  # a hint: nothing to do where nothing may be written
            with pytest.raises(StoreIOError) as ei:
                r.events.put(kept_event(7))
            assert ei.value.code == "read_only"
        finally:
            r.close()
    assert files_under(data) == before


def test_log_compaction_keeps_the_file_bounded(stores: Stores, data: Path) -> None:
    text = "y" * (LOG_CAP // 16)
    for i in range(100):
        stores.logs.append_log("run-1", [log_entry(i, text)])
    path = data / "logs" / "r" / "run-1.jsonl"
    assert path.stat().st_size < 2 * LOG_CAP + 2 * len(text) + 4096
    kept, dropped = stores.logs.read_log("run-1")
    assert len(kept) == 16 and kept[-1]["effect_seq"] == 99
    assert dropped == 84 * len(text)
    first = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert "dropped" in first and "text" not in first


def test_a_snapshot_name_that_is_no_file_name(stores: Stores, data: Path) -> None:
    for name in ("../escape", "a/b", ".hidden", "x" * 300, "ünïcode ✓"):
        stores.snapshots.put_snapshot(snapshot("r1", name))
    names = sorted(s["name"] for s in stores.snapshots.list_snapshots(run_id="r1"))
    assert names == sorted(["../escape", "a/b", ".hidden", "x" * 300, "ünïcode ✓"])
    assert all(p.parent == data / "snapshots" / "r" / "r1"
               for p in (data / "snapshots").rglob("*.json"))
    assert not (data / "escape").exists()
    assert stores.snapshots.get_snapshot("r1", "a/b")["name"] == "a/b"


def test_prune_records_survive_a_torn_line(stores: Stores, data: Path) -> None:
    stores.audit.put_prune_record({"run_id": "a"})
    with open(data / "audit" / "pruned.jsonl", "ab") as f:
        f.write(b'{"run_id": "b", "wo')  # a crash mid-append: that prune never returned
    stores.audit.put_prune_record({"run_id": "c"})
    assert [r["run_id"] for r in stores.audit.list_prune_records()] == ["a", "c"]


def test_a_corrupt_heartbeat_names_its_file(stores: Stores, data: Path) -> None:
    stores.audit.beat({"worker_id": "w1"})
    (data / "audit" / "heartbeats" / "w1.json").write_text("[")
    with pytest.raises(StoreIOError) as ei:
        stores.audit.heartbeats()
    assert "w1.json" in str(ei.value) and ei.value.code == "corrupt_heartbeat"


def test_import_run_leaves_nothing_when_the_run_cannot_be_saved(stores: Stores) -> None:
    run = make_run("r1", bad=object())  # a state that cannot be saved
    with pytest.raises(TypeError):
        stores.runs.import_run(run, [dict(record("r1", 0).to_jsonable(), seq=0)])
    assert stores.ledger.list("r1") == [] and stores.runs.load("r1") is None
    ok = make_run("r1")
    stores.runs.import_run(ok, [])
    assert stores.runs.load("r1") == ok


def test_expired_events_are_pruned_from_disk(stores: Stores, data: Path) -> None:
    stores.events.put(kept_event(1, ttl=10))
    stores.events.mark_received("ev-1", "r1")
    stores.events.put(kept_event(2, ttl=10 ** 6))
    assert stores.events.prune(now=T0 + timedelta(seconds=11)) == 1
    assert sorted(p.name for p in (data / "events" / "e").iterdir()) == ["ev-2.json"]
