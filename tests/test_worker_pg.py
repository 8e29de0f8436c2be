"""``abstractrt worker`` on the PostgreSQL store: NOTIFY wakes it long before its interval,
a signal ends its LISTEN at once, and two workers on one database split the runs with
each effect run once. Real processes; a database of this module's own (the commands use
the store's default schema), dropped at the end.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from cli_helpers import CLI
from pg_helpers import requires_pg, throwaway_database
from test_worker_helpers import ASSETS, Background, executions, wait_for

pytestmark = requires_pg


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with throwaway_database("worker") as url:
        yield url


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> CLI:
    w = CLI(tmp_path)
    shutil.copy(ASSETS / "side_effects.py", w.workflows_dir / "side_effects.py")
    w.env["ABSTRACTRT_STORE"] = db_url
    return w


def run_json(world: CLI, *args: str) -> Any:
    r = world.run(*args, "--json")
    assert r.exit_code == 0, r.output
    return r.json()


def beats(db_url: str) -> List[Dict[str, Any]]:
    import psycopg

    with psycopg.connect(db_url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT heartbeat FROM abstractrt.heartbeats").fetchall()
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


def rounds_of(db_url: str, pid: int) -> int:
    try:
        return max([b.get("rounds", 0) for b in beats(db_url) if b.get("pid") == pid] or [0])
    except Exception:  # the schema is created by the worker's first command
        return 0


def status(world: CLI, run_id: str) -> str:
    return run_json(world, "show", run_id)["status"]


def test_notify_wakes_a_worker_whose_interval_is_a_minute(world: CLI, db_url: str) -> None:
    side = world.tmp / "side.txt"
    with Background(world.tmp, world.env, "--interval", "60") as w:
        w.wait_started()
        assert "wake-ups: LISTEN/NOTIFY" in w.stderr, w.output()
        wait_for("the worker's first round", lambda: rounds_of(db_url, w.proc.pid) >= 1)
        # It sleeps in LISTEN now, for up to a minute.
        t0 = time.monotonic()
        rid = run_json(world, "start", "effects", "--set", f"side={side}", "--no-tick")["run_id"]
        wait_for("the run to complete", lambda: status(world, rid) == "completed", timeout=50)
        took = time.monotonic() - t0
        assert took < 50, took  # the interval would have been 60 s: NOTIFY woke it
        assert len(executions(side)) == 3
        # A signal ends the LISTEN at once: exit 0, well before the minute is up.
        t1 = time.monotonic()
        assert w.stop(signal.SIGTERM, timeout=30) == 0, w.output()
        assert time.monotonic() - t1 < 30
    assert f"{rid}  effects  running -> completed  [running]" in w.stderr, w.output()
    (beat,) = [b for b in beats(db_url) if b["pid"] == w.proc.pid]
    assert beat["stopped_by"] == "SIGTERM" and beat["moved"] == 1


def test_two_workers_on_one_database_run_each_effect_once(world: CLI, db_url: str) -> None:
    side = world.tmp / "side.txt"
    rids = [run_json(world, "start", "effects", "--set", f"side={side}", "--set", "steps=2",
                     "--no-tick")["run_id"] for _ in range(10)]
    with Background(world.tmp, world.env, "--interval", "1") as a, \
            Background(world.tmp, world.env, "--interval", "1") as b:
        def done() -> bool:
            listed = run_json(world, "runs", "--status", "completed", "--limit", "100")
            return set(rids) <= {r["run_id"] for r in listed}

        wait_for("every run to complete", done)
        assert a.stop() == 0, a.output()
        assert b.stop() == 0, b.output()
    got = executions(side)
    assert sorted(got) == sorted((rid, n) for rid in rids for n in range(2))
    assert all(len(tokens) == 1 for tokens in got.values()), got
    for w in (a, b):
        assert "error" not in w.stderr, w.output()
