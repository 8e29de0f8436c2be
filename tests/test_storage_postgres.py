"""The PostgreSQL store against a real server: the store contract, then what only it has.

Skipped (with the reason) when ABSTRACTRT_TEST_PG_URL is unset; CI always sets it
(``bash scripts/pg.sh run -- ...``). Each test works in a schema of its own.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List

import pytest
from pg_helpers import (
    PG_URL,
    asset_cmd,
    drop_schema,
    new_schema_name,
    open_stores,
    requires_pg,
    sql,
)
from pg_helpers import pg_schema_fixture, pg_stores_fixture  # noqa: F401  (fixtures)
from store_contract import (
    LockHolder,
    StoreContract,
    StoreKit,
    ThreadSafetyContract,
    deadline_wait,
    make_run,
    record,
    until_wait,
    user_wait,
)

from abstractrt_cli.core.models import RunState, RunStatus, StepRecord, StepStatus, WaitReason
from abstractrt_cli.errors import (
    DataDirVersionError,
    RunBusyError,
    StateNotSavableError,
    StoreIOError,
    StoreUnavailableError,
)
from abstractrt_cli.storage.chain import verify_ledger_chain

pytestmark = requires_pg


class PgProcessLockHolder(LockHolder):
    """Another process, with its own connection, holding a run's lock."""

    def __init__(self, schema: str, run_id: str) -> None:
        self.proc = subprocess.Popen(asset_cmd("hold_lock.py", PG_URL, schema, run_id),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "locked", f"lock holder said {line!r}"

    def release(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.close()
            self.proc.wait(10)
            self.proc.stdout.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.stdout.close()


class PgKit(StoreKit):
    # A row cannot be torn, but a hand-edited one can hold a state that is no run. Every
    # part of the bundle is there (the kit's ``stores``, and ``reopen()``'s).
    capabilities = frozenset({"corruptible", "deadlines", "events", "snapshots", "artifacts",
                              "audit", "logs", "admin"})

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._opened: List[Any] = []
        stores = self._open()
        super().__init__(stores.runs, stores.ledger, stores)

    def _open(self) -> Any:
        stores = open_stores(self.schema)
        self._opened.append(stores)
        return stores

    def hold_lock_elsewhere(self, run_id: str) -> LockHolder:
        return PgProcessLockHolder(self.schema, run_id)

    def reopen(self) -> StoreKit:
        stores = self._open()
        return StoreKit(stores.runs, stores.ledger, stores)

    def corrupt_run(self, run_id: str) -> None:
        sql(f"UPDATE {self.schema}.runs SET state = %s WHERE run_id = %s",
            ('{"run_id": "' + run_id + '", "status": "torn"}', run_id))

    def close(self) -> None:
        for stores in self._opened:
            stores.close()


@pytest.fixture
def kit(pg_schema: str) -> Iterator[PgKit]:
    k = PgKit(pg_schema)
    try:
        yield k
    finally:
        k.close()


class TestPostgresStores(StoreContract, ThreadSafetyContract):
    """The contract every store honours, run unchanged against PostgreSQL."""


# ---------------------------------------------------------------------------- opening


def test_location_and_capabilities_hide_the_password(pg_stores: Any) -> None:
    password = PG_URL.split("@", 1)[0].rsplit(":", 1)[1]
    assert pg_stores.kind == "postgresql"
    assert password not in pg_stores.location and "@127.0.0.1" in pg_stores.location
    assert {"commit", "shared", "notify"} <= set(pg_stores.capabilities)
    info = pg_stores.info()
    assert info["store"] == "postgresql" and info["format"] == info["format_known"] == 2
    assert password not in json.dumps(info)


def _with_password(url: str, password: str) -> str:
    head, tail = url.split("@", 1)
    return head.rsplit(":", 1)[0] + ":" + password + "@" + tail


def _one_line_failure(url: str, **kw: Any) -> str:
    t = time.monotonic()
    with pytest.raises(StoreUnavailableError) as ei:
        _open_url(url, **kw)
    assert time.monotonic() - t < 15
    msg = str(ei.value)
    assert "\n" not in msg and ei.value.exit_code == 1
    return msg


def _open_url(url: str, **kw: Any) -> Any:
    from abstractrt_cli.storage.postgres import open_postgres_stores

    return open_postgres_stores(url, schema=new_schema_name(), **kw)


def test_wrong_password_is_one_clear_line_without_the_password() -> None:
    bad = "not-the-password-8d1f"
    msg = _one_line_failure(_with_password(PG_URL, bad))
    assert "password authentication failed" in msg
    assert bad not in msg and PG_URL.split("@", 1)[0].rsplit(":", 1)[1] not in msg
    assert msg.startswith("cannot connect to PostgreSQL at postgresql://abstractrt@127.0.0.1:")


def test_missing_database_is_one_clear_line() -> None:
    msg = _one_line_failure(PG_URL.rsplit("/", 1)[0] + "/no_such_db_here")
    assert 'database "no_such_db_here" does not exist' in msg


def test_unreachable_server_is_one_clear_line() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    msg = _one_line_failure(f"postgresql://someone:secret@127.0.0.1:{port}/db")
    assert "Connection refused" in msg or "connection refused" in msg.lower()
    assert "secret" not in msg


def test_a_server_that_never_answers_fails_within_the_connect_timeout() -> None:
    # A socket that completes TCP handshakes (the kernel's backlog) but never speaks.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        t = time.monotonic()
        with pytest.raises(StoreUnavailableError) as ei:
            _open_url(f"postgresql://u:pw@127.0.0.1:{port}/db", connect_timeout=2)
        took = time.monotonic() - t
    assert "no answer within 2 s" in str(ei.value)
    assert 1.5 <= took < 6, took


def test_without_psycopg_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from abstractrt_cli.storage.postgres import open_postgres_stores\n"
        "from abstractrt_cli.errors import StoreUnavailableError\n"
        "try:\n"
        f"    open_postgres_stores({PG_URL!r})\n"
        "except StoreUnavailableError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "abstractrt-cli[postgres]" in out.stdout and "psycopg" in out.stdout


def test_processes_racing_to_create_the_schema_all_get_it(pg_schema: str, tmp_path: Any) -> None:
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


def test_a_newer_schema_is_refused(pg_stores: Any, pg_schema: str) -> None:
    pg_stores.runs.save(make_run("r1"))
    sql(f"INSERT INTO {pg_schema}.schema_version (version) VALUES (99)")
    with pytest.raises(DataDirVersionError) as ei:
        open_stores(pg_schema)
    assert "99" in str(ei.value) and pg_schema in str(ei.value)


# ---------------------------------------------------------------------------- fidelity


def test_values_come_back_exactly_and_the_chain_verifies(pg_schema: str) -> None:
    tricky = {"big": 1e16, "negzero": -0.0, "nul": "a\x00b", "tiny": 5e-324,
              "int": 2**62, "text": "héllo ✓ \U0001f600", "nested": [{"a": None}, [], {}]}
    stores = open_stores(pg_schema)
    try:
        run = make_run("r1", **tricky)
        stores.runs.save(run)
        out = stores.ledger.append(StepRecord(run_id="r1", step_id="s", node_id="n",
                                              status=StepStatus.COMPLETED, result=tricky))
    finally:
        stores.close()
    again = open_stores(pg_schema)
    try:
        loaded = again.runs.load("r1")
        assert loaded == run
        assert isinstance(loaded.vars["big"], float) and str(loaded.vars["negzero"]) == "-0.0"
        records = again.ledger.list("r1")
        assert records == [out] and records[0]["result"] == tricky
        assert verify_ledger_chain(records, expected_count=1,
                                   expected_head=out["record_hash"])["ok"]
    finally:
        again.close()


def test_unsavable_state_writes_nothing(pg_stores: Any) -> None:
    rs = pg_stores.runs
    run = make_run("r1", x=1)
    rs.save(run)
    before = rs.load("r1")
    run.vars["x"] = float("nan")
    with pytest.raises(StateNotSavableError):
        rs.save(run)
    with pytest.raises(StateNotSavableError):
        rs.commit([record("r1", 0)], run)
    run.vars["x"] = "\ud800"  # a lone surrogate: not Unicode text
    with pytest.raises(StateNotSavableError):
        rs.commit([record("r1", 0)], run)
    assert rs.load("r1") == before
    assert pg_stores.ledger.head("r1") == (0, None)


# ---------------------------------------------------------------------------- commit


def test_commit_writes_records_and_checkpoint_together(pg_stores: Any) -> None:
    rs, ls = pg_stores.runs, pg_stores.ledger
    run = make_run("r1")
    recs = [record("r1", n) for n in range(3)]
    stored = rs.commit(recs, run)
    assert [r["seq"] for r in stored] == [0, 1, 2]
    assert (run.ledger_count, run.ledger_head) == (3, stored[-1]["record_hash"])
    assert recs[2].record_hash == stored[-1]["record_hash"] and recs[2].seq == 2
    loaded = rs.load("r1")
    assert (loaded.ledger_count, loaded.ledger_head) == (3, stored[-1]["record_hash"])
    assert ls.list("r1") == stored
    run.status, run.waiting = RunStatus.WAITING, user_wait("k")
    rs.commit([], run)  # a checkpoint alone
    assert rs.load("r1").status == RunStatus.WAITING and ls.head("r1")[0] == 3
    rs.commit([record("r1", 3)], None)  # records alone
    assert ls.head("r1")[0] == 4 and rs.load("r1").ledger_count == 3
    with pytest.raises(ValueError):
        rs.commit([record("r1", 9), record("r2", 9)], None)


def test_commit_chains_after_records_another_process_wrote(pg_stores: Any, pg_schema: str) -> None:
    rs, ls = pg_stores.runs, pg_stores.ledger
    run = make_run("r1")
    rs.commit([record("r1", 0)], run)  # this store now knows the head...
    other = open_stores(pg_schema)
    try:
        other.ledger.append(record("r1", 1))  # ...which another writer moves
        other.ledger.append(record("r1", 2))
    finally:
        other.close()
    rs.commit([record("r1", 3)], run)
    records = ls.list("r1")
    assert [r["step_id"] for r in records] == ["s0", "s1", "s2", "s3"]
    assert run.ledger_count == 4
    assert verify_ledger_chain(records, expected_count=4, expected_head=run.ledger_head)["ok"]


def test_a_failed_commit_writes_neither_records_nor_run(pg_stores: Any, pg_schema: str) -> None:
    rs, ls = pg_stores.runs, pg_stores.ledger
    run = make_run("r1", x=1)
    rs.commit([record("r1", 0)], run)
    # A constraint the database enforces fails the statement after the ledger insert ran.
    sql(f"ALTER TABLE {pg_schema}.runs ADD CONSTRAINT no_two CHECK (state->'vars'->>'x' <> '2')")
    run.vars["x"] = 2
    with pytest.raises(StoreIOError, match="no_two"):
        rs.commit([record("r1", 1)], run)
    assert ls.head("r1")[0] == 1
    assert rs.load("r1").vars["x"] == 1
    assert run.ledger_count == 1  # the caller's run is left as it was, too
    run.vars["x"] = 3
    rs.commit([record("r1", 1)], run)
    assert verify_ledger_chain(ls.list("r1"), expected_count=2,
                               expected_head=run.ledger_head)["ok"]


# ---------------------------------------------------------------------------- locks


def test_a_killed_lock_holder_frees_the_lock_at_once(pg_stores: Any, pg_schema: str) -> None:
    holder = PgProcessLockHolder(pg_schema, "r1")
    with pytest.raises(RunBusyError):
        with pg_stores.runs.lock("r1", timeout=0):
            pass
    holder.kill()  # kill -9: no chance to unlock
    t = time.monotonic()
    with pg_stores.runs.lock("r1", timeout=10):
        took = time.monotonic() - t
    assert took < 2, took  # freed when its connection died, not after some timeout


def test_a_lost_connection_loses_the_lock_and_refuses_writes(pg_schema: str) -> None:
    name = f"abstractrt-{pg_schema}"
    stores = open_stores(pg_schema, application_name=name)
    try:
        _lost_connection(stores, pg_schema, name)
    finally:
        stores.close()


def _lost_connection(stores: Any, pg_schema: str, name: str) -> None:
    rs = stores.runs
    rs.save(make_run("r1", x=1))
    with rs.lock("r1", timeout=0):
        pid = sql("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,))
        assert len(pid) == 1
        sql("SELECT pg_terminate_backend(%s)", (pid[0][0],))
        other = open_stores(pg_schema)
        try:  # the server freed the lock: someone else may take the run now
            with other.runs.lock("r1", timeout=5):
                pass
        finally:
            other.close()
        run = make_run("r1", x=2)
        with pytest.raises(StoreUnavailableError):
            rs.save(run)  # never written through a session that lost the run's lock
        with pytest.raises(StoreUnavailableError) as ei:
            rs.load("r1")
        assert "held the lock of run r1" in str(ei.value)
    assert rs.load("r1").vars["x"] == 1  # once the lock is let go, a new session serves
    with rs.lock("r1", timeout=0):
        pass


def test_locks_of_one_schema_do_not_block_another(pg_stores: Any) -> None:
    other_schema = new_schema_name()
    other = open_stores(other_schema)
    try:
        with pg_stores.runs.lock("r1", timeout=0):
            with other.runs.lock("r1", timeout=0):
                pass
    finally:
        other.close()
        drop_schema(other_schema)


def test_threads_hold_locks_through_their_own_connections(pg_stores: Any) -> None:
    rs = pg_stores.runs
    got: List[str] = []
    with rs.lock("r1", timeout=0):
        def other_thread() -> None:
            try:
                with rs.lock("r1", timeout=0):
                    got.append("locked")
            except RunBusyError:
                got.append("busy")
            with rs.lock("r2", timeout=0):
                got.append("r2")

        t = threading.Thread(target=other_thread)
        t.start()
        t.join(30)
    assert got == ["busy", "r2"]


# ---------------------------------------------------------------------------- queries


def _fill(schema: str, n: int) -> None:
    """``n`` completed runs straight into the tables (fast), each with a snapshot, an
    artifact (linked to it, tagged) and log entries; then statistics."""
    sql(f"""INSERT INTO {schema}.runs (run_id, status, workflow_id, created_at, updated_at, state)
            SELECT 'bulk-' || g, 'completed', 'wf', now() - g * interval '1 second', now(),
                   json_build_object('run_id', 'bulk-' || g, 'workflow_id', 'wf',
                                     'status', 'completed', 'current_node', 'n1')
            FROM generate_series(1, {n}) g""")
    sql(f"""INSERT INTO {schema}.snapshots (run_id, name, tags, state, created_at, doc)
            SELECT 'bulk-' || g, 'snap', ARRAY['bulk'], '{{}}'::json, now(),
                   json_build_object('run_id', 'bulk-' || g, 'name', 'snap',
                                     'tags', json_build_array('bulk'))
            FROM generate_series(1, {n}) g""")
    ref = "'sha256:' || encode(sha256(('blob ' || g)::bytea), 'hex')"
    sql(f"""INSERT INTO {schema}.artifacts (ref, data, size, content_type, created_at, created)
            SELECT {ref}, ('blob ' || g)::bytea, length('blob ' || g), 'text/plain',
                   now()::text, now() FROM generate_series(1, {n}) g""")
    sql(f"INSERT INTO {schema}.artifact_runs (ref, run_id) "
        f"SELECT {ref}, 'bulk-' || g FROM generate_series(1, {n}) g")
    sql(f"INSERT INTO {schema}.artifact_tags (ref, tag) "
        f"SELECT {ref}, 'bulk' FROM generate_series(1, {n}) g")
    sql(f"""INSERT INTO {schema}.logs (run_id, n, bytes, entry)
            SELECT 'bulk-' || (g % 1000), g, 4, json_build_object('text', 'line')
            FROM generate_series(1, {n}) g""")
    sql(f"""INSERT INTO {schema}.log_heads (run_id, kept, dropped, next_n)
            SELECT 'bulk-' || g, 4 * {n} / 1000, 0, {n} + 1 FROM generate_series(0, 999) g""")
    for table in ("runs", "snapshots", "artifacts", "artifact_runs", "artifact_tags", "logs",
                  "log_heads"):
        sql(f"ANALYZE {schema}.{table}")


RARE_BLOB = b"a blob of wait-1"
QUERY_SHAPES = [
    ("runs", "list_runs", {"status": RunStatus.WAITING, "limit": 50}),
    ("runs", "list_runs", {"status": RunStatus.RUNNING}),
    ("runs", "list_runs", {"wait_key": "key-1"}),
    ("runs", "list_runs", {"wait_reason": "user"}),
    ("runs", "list_runs", {"workflow_id": "rare"}),
    ("runs", "list_runs", {"parent_run_id": "p1"}),
    ("runs", "list_runs", {"limit": 20}),
    ("runs", "list_due_wait_until", {"now": datetime(2031, 1, 1, tzinfo=timezone.utc)}),
    ("runs", "earliest_due", {}),
    ("runs", "match_prefix", {"prefix": "wait-1"}),
    ("runs", "list_children", {"parent_run_id": "p1"}),
    ("snapshots", "list_snapshots", {"run_id": "wait-1"}),
    ("snapshots", "list_snapshots", {"tag": "rare"}),
    ("snapshots", "list_snapshots", {"run_id": "wait-1", "tag": "rare"}),
    ("snapshots", "get_snapshot", {"run_id": "wait-1", "name": "before"}),
    ("artifacts", "list_artifacts", {"run_id": "wait-1"}),
    ("artifacts", "list_artifacts", {"tag": "rare"}),
    ("artifacts", "artifact_meta", {"ref": "sha256:" + hashlib.sha256(RARE_BLOB).hexdigest()}),
    ("artifacts", "get_artifact", {"ref": "sha256:" + hashlib.sha256(RARE_BLOB).hexdigest()}),
    ("logs", "read_log", {"run_id": "wait-1"}),
]


@pytest.fixture(scope="module")
def big_store() -> Iterator[Any]:
    """20,000 completed runs (with their snapshots, artifacts and logs) and a few that
    queries look for (one schema for the module)."""
    schema = new_schema_name()
    stores = open_stores(schema)
    try:
        _fill(schema, 20000)
        rs = stores.runs
        for i in range(5):
            rs.save(make_run(f"wait-{i}", status=RunStatus.WAITING, waiting=user_wait(f"key-{i}")))
            rs.save(make_run(f"due-{i}", status=RunStatus.WAITING,
                             waiting=until_wait(f"2030-01-0{i + 1}T00:00:00Z")))
            rs.save(make_run(f"deadline-{i}", status=RunStatus.WAITING,
                             waiting=deadline_wait(WaitReason.EVENT if i % 2 else WaitReason.USER,
                                                   f"2030-02-0{i + 1}T00:00:00Z")))
            rs.save(make_run(f"later-{i}", status=RunStatus.WAITING,
                             waiting=deadline_wait(WaitReason.USER, "2040-01-01T00:00:00Z")))
            rs.save(make_run(f"kid-{i}", workflow_id="rare", parent_run_id="p1"))
        stores.snapshots.put_snapshot({"run_id": "wait-1", "name": "before", "tags": ["rare"],
                                       "state": rs.load("wait-1").to_jsonable()})
        stores.artifacts.put_artifact(RARE_BLOB, run_id="wait-1", tags=["rare"])
        stores.logs.append_log("wait-1", [{"text": "hello\n"}])
        for table in ("runs", "snapshots", "artifacts", "artifact_runs", "artifact_tags"):
            sql(f"ANALYZE {schema}.{table}")
        yield stores
    finally:
        stores.close()
        drop_schema(schema)


def _count_rows_touched(stores: Any, call: Any) -> List[int]:
    """Run ``call()`` and return, for each query it made, the rows its plan's scans touched."""
    touched: List[int] = []
    connector = stores.runs.db.connector
    original = connector.fetchall

    def explain(query: str, params: Any = None) -> Any:
        (plan,) = original("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params)[0][0]
        touched.append(_rows_touched(plan["Plan"]))
        return original(query, params)

    connector.fetchall = explain  # type: ignore[method-assign]
    connector.fetchone = lambda q, p=None: (explain(q, p) or [None])[0]  # type: ignore[method-assign]
    try:
        assert call() is not None
    finally:
        del connector.fetchall
        del connector.fetchone
    return touched


@pytest.mark.parametrize("part, method, kwargs", QUERY_SHAPES)
def test_queries_use_indexes(big_store: Any, part: str, method: str, kwargs: dict) -> None:
    """Every query shape is answered from an index: its cost grows with the matching runs,
    not with the 20,000 others (PRODUCT §3)."""
    touched = _count_rows_touched(big_store, lambda: getattr(getattr(big_store, part), method)(**kwargs))
    # The matches are at most a handful: a plan that reads the 20,000 others is a scan.
    assert touched and max(touched) <= 50, touched


def test_deadlines_are_due_through_the_index(big_store: Any) -> None:
    """Timers and deadlines come due together, earliest first, from the one index."""
    rs = big_store.runs
    now = datetime(2031, 1, 1, tzinfo=timezone.utc)
    got: List[Any] = []
    touched = _count_rows_touched(big_store, lambda: got.extend(rs.list_due_wait_until(now=now)) or got)
    assert [r.run_id for r in got] == [f"due-{i}" for i in range(5)] + [
        f"deadline-{i}" for i in range(5)]
    assert touched == [10]  # exactly the due runs: nothing else read, nothing filtered away
    assert [r.run_id for r in rs.list_due_wait_until(now=datetime(2030, 2, 2, 12, tzinfo=timezone.utc),
                                                     limit=7)] == [
        f"due-{i}" for i in range(5)] + ["deadline-0", "deadline-1"]
    assert rs.earliest_due() == datetime(2030, 1, 1, tzinfo=timezone.utc)
    plan = rs.db.connector.fetchall("EXPLAIN " + rs.db.sql.due,
                                    (now, None))
    assert "runs_due" in "\n".join(r[0] for r in plan)


def _rows_touched(node: Dict[str, Any]) -> int:
    """Rows the scans of a plan produced or filtered away (EXPLAIN ANALYZE)."""
    n = 0
    if "Scan" in node.get("Node Type", ""):
        n += (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
              + node.get("Rows Removed by Index Recheck", 0)) * node.get("Actual Loops", 1)
    return n + sum(_rows_touched(child) for child in node.get("Plans", []))


# ---------------------------------------------------------------------------- wake-ups


def test_running_runs_wake_listeners(pg_stores: Any, pg_schema: str) -> None:
    rs = pg_stores.runs
    assert rs.listen(0) == []  # starts listening
    sender = open_stores(pg_schema)  # another process would do the same: its own connection
    try:
        sender.runs.save(make_run("r1"))  # started: running
        assert rs.listen(10) == ["r1"]
        run = make_run("r1", status=RunStatus.WAITING, waiting=user_wait())
        sender.runs.save(run)  # now waiting: no wake-up
        run.vars["x"] = 1
        sender.runs.save(run)
        assert rs.listen(0.2) == []
        run.status, run.waiting = RunStatus.RUNNING, None  # resumed
        sender.runs.commit([record("r1", 0)], run)
        assert rs.listen(10) == ["r1"]
        sender.runs.commit([record("r1", 1)], run)  # still running: no new wake-up
        assert rs.listen(0.2) == []
        sender.runs.wake("r7")
        assert rs.listen(10) == ["r7"]
    finally:
        sender.close()


def test_earliest_due_and_info(pg_stores: Any) -> None:
    rs = pg_stores.runs
    assert rs.earliest_due() is None
    rs.save(make_run("a", status=RunStatus.WAITING, waiting=until_wait("2030-01-02T00:00:00+02:00")))
    rs.save(make_run("b", status=RunStatus.WAITING, waiting=until_wait("2030-01-03T00:00:00Z")))
    rs.save(make_run("c", status=RunStatus.COMPLETED))
    assert rs.earliest_due() == datetime(2030, 1, 1, 22, tzinfo=timezone.utc)
    assert rs.info()["runs"] == {"completed": 1, "waiting": 2} and rs.info()["total"] == 3


def test_list_runs_created_since_and_parent(pg_stores: Any) -> None:
    rs = pg_stores.runs
    t0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for i in range(4):
        rs.save(make_run(f"r{i}", created=t0 + timedelta(hours=i),
                         parent_run_id="p" if i % 2 else None))
    ids = [r.run_id for r in rs.list_runs(created_since=t0 + timedelta(hours=1))]
    assert ids == ["r3", "r2", "r1"]
    assert [r.run_id for r in rs.list_runs(parent_run_id="p")] == ["r3", "r1"]
    assert [r.run_id for r in rs.list_runs(parent_run_id="p", limit=1)] == ["r3"]
    assert list(rs.iter_run_ids(batch=2)) == ["r0", "r1", "r2", "r3"]


def test_corrupt_row_is_reported_not_skipped(pg_stores: Any, pg_schema: str) -> None:
    rs = pg_stores.runs
    rs.save(make_run("good"))
    rs.save(make_run("bad"))
    sql(f"""UPDATE {pg_schema}.runs SET state = '{{"run_id": "bad", "status": "nope"}}'
            WHERE run_id = 'bad'""")
    from abstractrt_cli.errors import CorruptRunError

    with pytest.raises(CorruptRunError) as ei:
        rs.load("bad")
    assert "bad" in str(ei.value) and "postgresql://" in str(ei.value)
    seen: List[Any] = []
    assert [r.run_id for r in rs.list_runs(on_corrupt=seen.append)] == ["good"]
    assert len(seen) == 1
    with pytest.raises(CorruptRunError):
        rs.list_runs()


def test_validate_run_id_is_the_portable_rule(pg_stores: Any) -> None:
    from abstractrt_cli.errors import InvalidRunIdError

    assert pg_stores.runs.validate_run_id("abc-1.2_3") == "abc-1.2_3"
    for bad in ("../x", "a/b", "", "x" * 200, 5):
        with pytest.raises(InvalidRunIdError):
            pg_stores.runs.validate_run_id(bad)
    assert pg_stores.runs.match_prefix("a_") == []  # '_' is not a LIKE wildcard here
    pg_stores.runs.save(make_run("abc"))
    assert pg_stores.runs.match_prefix("a_") == [] and pg_stores.runs.match_prefix("ab") == ["abc"]


def test_run_state_round_trips_every_field(pg_stores: Any) -> None:
    """Every field of RunState set to something other than its default comes back."""
    import dataclasses

    run = RunState.new(workflow_id="wf", entry_node="a", run_id="full")
    for f in dataclasses.fields(RunState):
        if getattr(run, f.name) is not None:
            continue
        t = str(f.type)
        if "WaitState" in t:
            value: Any = user_wait()
        elif "Dict" in t:
            value = {"x": [1, {"y": None}]}
        elif "List" in t:
            value = ["v"]
        elif "int" in t:
            value = 7
        else:
            value = "v"
        setattr(run, f.name, value)
    run.status = RunStatus.WAITING
    full = RunState.from_dict(run.to_jsonable())
    pg_stores.runs.save(full)
    assert pg_stores.runs.load("full").to_jsonable() == full.to_jsonable()
    assert all(v is not None for v in full.to_jsonable().values())


def test_a_load_under_the_lock_brings_the_ledger_tail_along(pg_stores: Any, pg_schema: str) -> None:
    rs, ls = pg_stores.runs, pg_stores.ledger
    run = make_run("r1")
    recs = [record("r1", n) for n in range(4)]
    recs[3].result = {"nul": "a\x00b"}  # json_agg must hand it back as written
    rs.commit(recs, run)  # checkpoint at 4 records
    ls.append(record("r1", 4))  # and one beyond it
    plain = ls.records_since("r1", 3)
    assert [r["seq"] for r in plain] == [3, 4]
    with rs.lock("r1", timeout=0):
        assert rs.load("r1") == run
        assert ls.records_since("r1", 3) == plain
        assert ls.records_since("r1", 4) == plain[1:]  # (used once, then asked again)
        assert ls.head("r1") == (5, plain[-1]["record_hash"])
    sql(f"""UPDATE {pg_schema}.runs SET state = json_build_object(
                'run_id', 'r1', 'workflow_id', 'wf', 'status', 'running',
                'current_node', 'n1', 'ledger_count', 'x') WHERE run_id = 'r1'""")
    from abstractrt_cli.errors import CorruptRunError

    with rs.lock("r1", timeout=0):
        with pytest.raises(CorruptRunError):
            rs.load("r1")


def test_sessions_ask_the_server_to_probe_for_a_vanished_machine(pg_schema: str) -> None:
    name = f"abstractrt-{pg_schema}"
    stores = open_stores(pg_schema, application_name=name)
    try:
        with stores.runs.lock("r1", timeout=0):  # on the session that holds the lock
            assert stores.runs.db.connector.fetchone("SHOW tcp_keepalives_idle")[0] in ("10", "10s")
            assert stores.runs.db.connector.fetchone("SHOW tcp_keepalives_count")[0] == "3"
    finally:
        stores.close()


def test_import_run_writes_verbatim_and_refuses_a_run_that_exists(pg_stores: Any) -> None:
    rs, ls = pg_stores.runs, pg_stores.ledger
    run = make_run("r1")
    other = open_stores_memory_copy(run)
    rs.import_run(run, other)
    assert rs.load("r1") == run and ls.list("r1") == other
    with pytest.raises(StoreIOError) as ei:
        rs.import_run(run, other)
    assert ei.value.code == "run_exists" and "r1" in str(ei.value)
    assert ls.list("r1") == other  # nothing half-written


def open_stores_memory_copy(run: RunState) -> List[dict]:
    """A chained ledger for ``run`` made by the reference store, and the run checkpointed."""
    from abstractrt_cli.storage.memory import InMemoryLedgerStore

    mem = InMemoryLedgerStore()
    for n in range(3):
        mem.append(record(run.run_id, n))
    run.ledger_count, run.ledger_head = mem.head(run.run_id)
    return mem.list(run.run_id)
