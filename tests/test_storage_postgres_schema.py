"""PostgreSQL schema version 2: a version-1 schema (as the version-1 code made it, rows
included) is upgraded — deadlines given their due time — by racing processes too, all or
nothing; and the parts of version 2 beyond the contract (tests/store_contract.py).

Skipped (with the reason) when ABSTRACTRT_TEST_PG_URL is unset (see tests/pg_helpers.py).
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, List, Optional

import psycopg
import pytest
from pg_helpers import PG_URL, asset_cmd, open_stores, requires_pg, sql
from pg_helpers import pg_schema_fixture, pg_stores_fixture  # noqa: F401  (fixtures)
from store_contract import deadline_wait, make_run, until_wait, user_wait

from abstractrt_cli.core.models import RunState, RunStatus, WaitReason
from abstractrt_cli.errors import (
    InvalidRunIdError,
    PayloadError,
    StoreIOError,
    StoreUnavailableError,
)
from abstractrt_cli.storage import rules
from abstractrt_cli.storage.memory import InMemoryLogStore

pytestmark = requires_pg

UTC = timezone.utc


# ---------------------------------------------------------------------------- version 1


def make_v1_schema(schema: str) -> None:
    """The schema exactly as the version-1 code created it (its migration, unchanged)."""
    from abstractrt_cli.storage.postgres.connection import Connector
    from abstractrt_cli.storage.postgres.schema import ensure_schema

    c = Connector(PG_URL, connect_timeout=5, application_name="abstractrt-test")
    try:
        assert ensure_schema(c, schema, target=1) == 1
    finally:
        c.close()


V1_INSERT = """INSERT INTO {s}.runs (run_id, status, workflow_id, wait_reason, wait_key, until,
                   parent_run_id, created_at, updated_at, state)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""


def save_as_v1(schema: str, run: RunState, state: Optional[str] = None) -> None:
    """A row as the version-1 store wrote it: ``until`` only for a timer's wait."""
    w = run.waiting if run.status == RunStatus.WAITING else None
    until = w.until if w is not None and w.reason == WaitReason.UNTIL else None
    sql(V1_INSERT.format(s=schema),
        (run.run_id, run.status.value, run.workflow_id, w.reason.value if w else None,
         w.wait_key if w else None, until, run.parent_run_id, run.created_at, run.updated_at,
         state if state is not None else json.dumps(run.to_jsonable())))


PAST, FUTURE = "2030-01-01T06:00:00+00:00", "2030-01-01T09:00:00+00:00"
NOW = datetime(2030, 1, 1, 7, 0, tzinfo=UTC)


def fill_v1(schema: str) -> None:
    waiting = RunStatus.WAITING
    save_as_v1(schema, make_run("timer", status=waiting, waiting=until_wait("2030-01-01T06:15:00Z")))
    save_as_v1(schema, make_run("user-past", status=waiting,
                                waiting=deadline_wait(WaitReason.USER, PAST)))
    save_as_v1(schema, make_run("user-future", status=waiting,
                                waiting=deadline_wait(WaitReason.USER, FUTURE)))
    # 11:30+05:00 is 06:30Z.
    save_as_v1(schema, make_run("event-past", status=waiting,
                                waiting=deadline_wait(WaitReason.EVENT, "2030-01-01T11:30:00+05:00")))
    save_as_v1(schema, make_run("no-deadline", status=waiting, waiting=user_wait()))
    save_as_v1(schema, make_run("job", status=waiting, waiting=deadline_wait(WaitReason.JOB, PAST)))
    save_as_v1(schema, make_run("ended", status=RunStatus.COMPLETED))
    # A row nobody can read: the migration leaves it as it is (reading it reports it).
    save_as_v1(schema, make_run("torn", status=waiting, waiting=deadline_wait(WaitReason.USER, PAST)),
               state='{"run_id": "torn", "status": "nope"}')


def due_column(schema: str) -> dict:
    return {rid: due for rid, due in sql(f"SELECT run_id, due_at FROM {schema}.runs")}


def columns(schema: str) -> List[str]:
    return [r[0] for r in sql("SELECT column_name FROM information_schema.columns WHERE "
                              "table_schema = %s AND table_name = 'runs'", (schema,))]


def test_a_v1_schema_is_upgraded_and_its_deadlines_become_due(pg_schema: str) -> None:
    make_v1_schema(pg_schema)
    fill_v1(pg_schema)
    assert "until" in columns(pg_schema) and "due_at" not in columns(pg_schema)
    stores = open_stores(pg_schema)
    try:
        assert stores.info()["format"] == 2
        assert sql(f"SELECT version FROM {pg_schema}.schema_version ORDER BY 1") == [(1,), (2,)]
        assert "due_at" in columns(pg_schema) and "until" not in columns(pg_schema)
        due = due_column(pg_schema)
        assert due["user-past"] == datetime(2030, 1, 1, 6, 0, tzinfo=UTC)
        assert due["event-past"] == datetime(2030, 1, 1, 6, 30, tzinfo=UTC)
        assert due["timer"] == datetime(2030, 1, 1, 6, 15, tzinfo=UTC)  # kept as it was
        assert due["user-future"] == datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
        assert due["no-deadline"] is due["job"] is due["ended"] is due["torn"] is None
        rs = stores.runs
        assert [r.run_id for r in rs.list_due_wait_until(now=NOW)] == [
            "user-past", "timer", "event-past"]
        assert rs.earliest_due() == datetime(2030, 1, 1, 6, 0, tzinfo=UTC)
        assert rs.load("user-past").waiting.deadline == PAST  # the state is untouched
        # The tables of version 2 are there and work.
        stores.snapshots.put_snapshot({"run_id": "timer", "name": "s", "state": {}})
        assert stores.snapshots.list_snapshots(run_id="timer")[0]["name"] == "s"
    finally:
        stores.close()
    again = open_stores(pg_schema)  # current: nothing more to do
    try:
        assert again.info()["format"] == 2
        assert sql(f"SELECT count(*) FROM {pg_schema}.schema_version") == [(2,)]
    finally:
        again.close()


def test_processes_racing_to_upgrade_a_v1_schema_all_get_version_2(pg_schema: str,
                                                                   tmp_path: Path) -> None:
    make_v1_schema(pg_schema)
    fill_v1(pg_schema)
    go = tmp_path / "go"
    procs = [subprocess.Popen(asset_cmd("open_store.py", PG_URL, pg_schema, str(go)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [o.strip() for o, _ in outs] == ["version 2"] * 4
    assert sql(f"SELECT version FROM {pg_schema}.schema_version ORDER BY 1") == [(1,), (2,)]
    assert due_column(pg_schema)["user-past"] == datetime(2030, 1, 1, 6, 0, tzinfo=UTC)


def test_a_failed_upgrade_leaves_version_1_as_it_was(pg_schema: str) -> None:
    make_v1_schema(pg_schema)
    fill_v1(pg_schema)
    sql(f"CREATE TABLE {pg_schema}.logs (x integer)")  # in the way of a version-2 table
    with pytest.raises(StoreUnavailableError) as ei:
        open_stores(pg_schema)
    assert "logs" in str(ei.value) and "already exists" in str(ei.value)
    assert sql(f"SELECT version FROM {pg_schema}.schema_version ORDER BY 1") == [(1,)]
    assert "until" in columns(pg_schema)  # the rename was rolled back with the rest
    assert sql(f"SELECT to_regclass('{pg_schema}.snapshots')") == [(None,)]
    sql(f"DROP TABLE {pg_schema}.logs")
    stores = open_stores(pg_schema)
    try:
        assert [r.run_id for r in stores.runs.list_due_wait_until(now=NOW)] == [
            "user-past", "timer", "event-past"]
    finally:
        stores.close()


def test_a_v1_writer_still_running_after_the_upgrade_fails_loudly(pg_schema: str) -> None:
    """Version-1 code writes ``until``: after the rename that is an error, never a row
    whose due time the version-2 queries would misread."""
    make_v1_schema(pg_schema)
    open_stores(pg_schema).close()  # upgraded
    with pytest.raises(psycopg.errors.UndefinedColumn):
        save_as_v1(pg_schema, make_run("late", status=RunStatus.WAITING,
                                       waiting=deadline_wait(WaitReason.USER, PAST)))


def test_a_deadline_set_or_cleared_moves_the_due_column(pg_stores: Any, pg_schema: str) -> None:
    rs = pg_stores.runs
    run = make_run("r1", status=RunStatus.WAITING, waiting=user_wait())
    rs.save(run)
    assert due_column(pg_schema)["r1"] is None
    run.waiting.deadline = "2030-01-01T05:00:00-02:00"
    rs.commit([], run)
    assert due_column(pg_schema)["r1"] == datetime(2030, 1, 1, 7, 0, tzinfo=UTC)
    run.status, run.waiting = RunStatus.RUNNING, None
    rs.save(run)
    assert due_column(pg_schema)["r1"] is None


# ---------------------------------------------------------------------------- artifacts


def test_processes_putting_the_same_new_bytes_at_once_keep_one_blob(pg_stores: Any) -> None:
    """Threads have connections of their own: to the server they are separate clients."""
    ar = pg_stores.artifacts
    data = b"the same bytes" * 1000
    start = threading.Barrier(6)
    errors: List[BaseException] = []

    def put(i: int) -> None:
        try:
            start.wait(10)
            ar.put_artifact(data, run_id=f"run-{i}", tags=[f"t{i}", "all"],
                            content_type="text/plain" if i == 3 else rules.DEFAULT_CONTENT_TYPE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    (meta,) = ar.list_artifacts()
    assert sorted(meta["run_ids"]) == [f"run-{i}" for i in range(6)]
    assert sorted(meta["tags"]) == sorted(["all"] + [f"t{i}" for i in range(6)])
    assert meta["content_type"] == "text/plain"  # a specific type wins over the default
    assert ar.get_artifact(meta["ref"]) == data


def test_damaged_bytes_are_an_error_not_an_artifact(pg_stores: Any, pg_schema: str) -> None:
    ar = pg_stores.artifacts
    ref = ar.put_artifact(b"original")["ref"]
    sql(f"UPDATE {pg_schema}.artifacts SET data = 'tampered'::bytea WHERE ref = %s", (ref,))
    with pytest.raises(StoreIOError) as ei:
        ar.get_artifact(ref)
    assert ei.value.code == "corrupt_artifact" and ref in str(ei.value)


def test_import_artifact_keeps_the_given_metadata(pg_stores: Any) -> None:
    ar = pg_stores.artifacts
    data = b"\x00\x01 bytes"
    meta = {"ref": rules.artifact_ref(data), "size": len(data), "content_type": "x/y",
            "name": "n.bin", "run_ids": ["a", "b"], "tags": ["t1", "t2"],
            "created_at": "2020-01-01T00:00:00+00:00"}
    assert ar.import_artifact(meta, data) == meta
    assert ar.artifact_meta(meta["ref"]) == meta and ar.get_artifact(meta["ref"]) == data
    merged = ar.import_artifact(dict(meta, run_ids=["c"], tags=["t3"],
                                     created_at="2025-01-01T00:00:00+00:00"), data)
    assert merged == dict(meta, run_ids=["a", "b", "c"], tags=["t1", "t2", "t3"])
    with pytest.raises(PayloadError):
        ar.import_artifact(dict(meta, ref="sha256:" + "0" * 64), data)
    with pytest.raises(InvalidRunIdError):
        ar.put_artifact(b"x", run_id="../escape")


# ---------------------------------------------------------------------------- snapshots


def test_snapshots_come_back_exactly(pg_stores: Any) -> None:
    sn = pg_stores.snapshots
    tricky = {"big": 1e16, "negzero": -0.0, "nul": "a\x00b", "text": "héllo ✓"}
    snap = {"run_id": "r1", "name": "n", "tags": ["a"], "state": make_run("r1", **tricky).to_jsonable(),
            "ledger_count": 3, "ledger_head": "ab" * 32, "created_at": "2030-01-01T00:00:00Z",
            "actor_id": "alice", "note": {"a key this version does not know": [1, 2]}}
    sn.put_snapshot(snap)
    got = sn.get_snapshot("r1", "n")
    assert got == snap and isinstance(got["state"]["vars"]["big"], float)
    assert str(got["state"]["vars"]["negzero"]) == "-0.0"
    with pytest.raises(PayloadError):
        sn.put_snapshot(dict(snap, name="nan", state={"x": float("nan")}))
    with pytest.raises(PayloadError):
        sn.put_snapshot(dict(snap, name="surrogate", state={"x": "\ud800"}))
    with pytest.raises(InvalidRunIdError):
        sn.put_snapshot(dict(snap, run_id="a/b"))
    assert [s["name"] for s in sn.list_snapshots()] == ["n"]


# ---------------------------------------------------------------------------- logs


def test_logs_keep_what_the_rule_keeps(pg_stores: Any) -> None:
    """Random appends (empty texts, multi-byte characters, entries over the cap on their
    own) leave the PostgreSQL log exactly as ``rules.cap_log`` — the memory store — does."""
    lg = pg_stores.logs
    lg.cap = 64
    ref = InMemoryLogStore(cap=64)
    rnd = random.Random(7)
    alphabet = ["a", "é", "✓", "\U0001f600", "\n"]
    for step in range(120):
        batch = [{"at": f"t{step}.{i}", "node_id": "n", "effect_seq": step, "stream": "stdout",
                  "text": "".join(rnd.choice(alphabet) for _ in range(rnd.choice([0, 1, 5, 20, 70])))}
                 for i in range(rnd.choice([1, 1, 2, 4]))]
        lg.append_log("r1", batch)
        ref.append_log("r1", batch)
        assert lg.read_log("r1") == ref.read_log("r1"), step
    kept = sql(f"SELECT kept FROM {lg._db.schema}.log_heads WHERE run_id = 'r1'")[0][0]
    assert kept == sum(len(e["text"].encode()) for e in ref.read_log("r1")[0])


def test_concurrent_appends_to_one_log_queue_up(pg_stores: Any) -> None:
    lg = pg_stores.logs

    def append(i: int) -> None:
        for n in range(20):
            lg.append_log("r1", [{"text": f"{i}:{n}\n", "stream": "stdout"}])

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    entries, dropped = lg.read_log("r1")
    assert dropped == 0 and len(entries) == 80
    for i in range(4):
        assert [e["text"] for e in entries if e["text"].startswith(f"{i}:")] == [
            f"{i}:{n}\n" for n in range(20)]


def test_import_log_and_text_that_is_not_unicode(pg_stores: Any) -> None:
    lg = pg_stores.logs
    lg.import_log("r1", [{"text": "kept"}], 1234)
    assert lg.read_log("r1") == ([{"text": "kept"}], 1234)
    with pytest.raises(StoreIOError) as ei:
        lg.import_log("r1", [{"text": "again"}], 0)
    assert ei.value.code == "log_exists"
    lg.append_log("r2", [{"text": "bad \udcff byte"}])  # surrogateescape'd output
    assert lg.read_log("r2") == ([{"text": "bad \ufffd byte"}], 0)
    with pytest.raises(PayloadError):
        lg.append_log("r3", [{"no": "text"}])
    lg.delete_log("r1")
    assert lg.read_log("r1") == ([], 0)


def test_dropping_the_oldest_entries_reads_only_those(pg_stores: Any, pg_schema: str) -> None:
    """A full log of 20,000 entries: an append that pushes out the oldest two reads a
    handful of rows, not the log (the statement stops at the first entry that may stay)."""
    lg = pg_stores.logs
    sql(f"""INSERT INTO {pg_schema}.logs (run_id, n, bytes, entry)
            SELECT 'r1', g, 4, json_build_object('text', 'line') FROM generate_series(0, 19999) g""")
    sql(f"INSERT INTO {pg_schema}.log_heads VALUES ('r1', 80000, 0, 20000)")
    sql(f"ANALYZE {pg_schema}.logs")
    lg.cap = 80000
    params = {"rid": "r1", "n0": 20000, "ents": '[{"text":"1234567"}]', "sizes": "[7]",
              "total": 7, "cut": 0, "k": 1, "excess": 7}
    with psycopg.connect(PG_URL, connect_timeout=5) as conn:
        (plan,) = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + lg._drop_oldest,
                               params).fetchone()[0]
        conn.rollback()  # ANALYZE ran it: undo (the block would commit)
    assert _scanned(plan["Plan"]) <= 20, plan
    lg.append_log("r1", [{"text": "1234567"}])
    entries, dropped = lg.read_log("r1")
    assert len(entries) == 19999 and dropped == 8 and entries[-1] == {"text": "1234567"}


def _scanned(node: dict) -> int:
    n = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) if "Scan" in node.get(
        "Node Type", "") else 0
    return n + sum(_scanned(c) for c in node.get("Plans", []))
