"""Real processes on one PostgreSQL store: ``kill -9`` at random, four tickers, racing resumes.

Every process opens its own connections, so to the server each one is what another
machine would be. The workflows and the side-effect log are the file store tests'
(``tests/assets/storage/workflows.py``): each effect appends a line to the log (fsync'd)
before it returns, so the log says which effects really ran, whatever the ledger says.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Set

import pytest
from pg_helpers import PG_URL, asset_cmd, open_stores, requires_pg
from pg_helpers import pg_schema_fixture  # noqa: F401  (fixture)

from abstractrt_cli import Runtime
from abstractrt_cli.core.models import RunStatus, WaitReason
from abstractrt_cli.storage import verify_ledger_chain

STORAGE_ASSETS = Path(__file__).parent / "assets" / "storage"
sys.path.insert(0, str(STORAGE_ASSETS))
from workflows import ask_workflow, counter_workflow, read_side_log  # noqa: E402

pytestmark = [requires_pg, pytest.mark.slow]

N_RUNS = 6
N_EFFECTS = 300
KILLS = 25


def _run_ids(n: int) -> List[str]:
    return [f"run-{k:02d}" for k in range(n)]


def completed_keys(schema: str, n_runs: int = N_RUNS) -> Dict[str, Set[str]]:
    """Per run, the idempotency keys whose completion its ledger records — after checking
    that every ledger verifies against its run's checkpoint and ends exactly there (the
    records and the checkpoint commit together), and that queries tell the truth."""
    stores = open_stores(schema)
    try:
        rs, ls = stores.runs, stores.ledger
        out: Dict[str, Set[str]] = {}
        by_status: Dict[RunStatus, Set[str]] = {}
        for rid in _run_ids(n_runs):
            run = rs.load(rid)
            records = ls.list(rid)
            if run is None:
                assert records == [], f"{rid}: ledger records of a run that does not exist"
                continue
            by_status.setdefault(run.status, set()).add(rid)
            report = verify_ledger_chain(records, expected_count=run.ledger_count,
                                         expected_head=run.ledger_head)
            assert report["ok"], (rid, report)
            assert len(records) == run.ledger_count, (rid, len(records), run.ledger_count)
            keys = [r["idempotency_key"] for r in records
                    if r["kind"] == "effect" and r["status"] == "completed"]
            assert len(keys) == len(set(keys)), f"{rid}: an effect was recorded twice"
            out[rid] = set(keys)
        for status in RunStatus:
            assert {r.run_id for r in rs.list_runs(status=status)} == by_status.get(status, set())
        return out
    finally:
        stores.close()


def start_driver(schema: str, log: Path, n_runs: int = N_RUNS,
                 n_effects: int = N_EFFECTS) -> subprocess.Popen:
    return subprocess.Popen(asset_cmd("crash_driver.py", PG_URL, schema, str(log),
                                      str(n_runs), str(n_effects)),
                            stdout=subprocess.PIPE, text=True)


def test_kill_9_at_random_moments(pg_schema: str, tmp_path: Path) -> None:
    log = tmp_path / "side-effects.log"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20240607")))
    frozen: Dict[str, int] = {}  # key -> times it had run when its completion was first seen
    in_flight_at_kill: Counter = Counter()
    kills = 0
    for _ in range(KILLS):
        proc = start_driver(pg_schema, log)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.02) if rng.random() < 0.3 else rng.uniform(0.02, 0.3))
        proc.kill()
        proc.wait()
        proc.stdout.close()
        kills += 1

        recorded = completed_keys(pg_schema)
        ran = Counter(key for _, key, _ in read_side_log(str(log)))
        all_recorded = set().union(*recorded.values()) if recorded else set()
        for key in all_recorded:
            frozen.setdefault(key, ran[key])
            assert ran[key] == frozen[key], f"effect {key} ran again after it was recorded"
        unrecorded = [k for k in ran if k not in all_recorded]
        assert len(unrecorded) <= 1, unrecorded  # one effect at a time was in flight
        for key in unrecorded:
            in_flight_at_kill[key] += 1
            assert ran[key] <= in_flight_at_kill[key]
        if len(recorded) == N_RUNS and all(len(v) == N_EFFECTS for v in recorded.values()):
            break

    proc = start_driver(pg_schema, log)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.split() == ["ready", "done"], out

    recorded = completed_keys(pg_schema)
    ran = Counter(key for _, key, _ in read_side_log(str(log)))
    stores = open_stores(pg_schema)
    try:
        for rid in _run_ids(N_RUNS):
            run = stores.runs.load(rid)
            assert run is not None and run.status == RunStatus.COMPLETED, rid
            assert run.vars["i"] == N_EFFECTS
            assert run.vars["out"] == {f"e{i}": {"i": i} for i in range(N_EFFECTS)}
            assert len(recorded[rid]) == N_EFFECTS
    finally:
        stores.close()
    assert set(ran) == set().union(*recorded.values())
    for key, times in ran.items():
        if key in frozen:
            assert times == frozen[key], f"effect {key} ran again after it was recorded"
        assert times <= 1 + in_flight_at_kill[key], (key, times, in_flight_at_kill[key])
    twice = sum(1 for t in ran.values() if t > 1)
    assert twice <= kills
    print(f"{kills} kills; {sum(in_flight_at_kill.values())} caught an effect in flight; "
          f"{twice} effects ran twice (each one in flight at a kill)")


WORKERS = 4
TICK_RUNS = 8
TICK_EFFECTS = 30


def test_four_processes_ticking_the_same_runs(pg_schema: str, tmp_path: Path) -> None:
    log, go = tmp_path / "side.log", tmp_path / "go"
    wf = counter_workflow(TICK_EFFECTS)
    stores = open_stores(pg_schema)
    try:
        rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger)
        run_ids = [rt.start(workflow=wf, run_id=f"run-{i}") for i in range(TICK_RUNS)]
    finally:
        stores.close()
    procs = [subprocess.Popen(asset_cmd("tick_worker.py", PG_URL, pg_schema, str(log),
                                        str(TICK_EFFECTS), str(go)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(WORKERS)]
    time.sleep(1.0)  # let them import and connect, waiting at the starting line
    go.touch()
    stats = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        stats.append(json.loads(out))
    print(stats)
    assert sum(s["busy"] for s in stats) > 0, stats  # they really did collide
    assert sum(1 for s in stats if s["ticks"] > 0) >= 2, stats  # and shared the work

    ran = Counter((rid, key) for rid, key, _ in read_side_log(str(log)))
    assert all(n == 1 for n in ran.values()), [k for k, n in ran.items() if n > 1]
    stores = open_stores(pg_schema)
    try:
        for rid in run_ids:
            run = stores.runs.load(rid)
            assert run.status == RunStatus.COMPLETED
            assert run.vars["i"] == TICK_EFFECTS  # no lost update
            assert run.vars["out"] == {f"e{i}": {"i": i} for i in range(TICK_EFFECTS)}
            assert sum(1 for r, _ in ran if r == rid) == TICK_EFFECTS
            records = stores.ledger.list(rid)
            report = verify_ledger_chain(records, expected_count=run.ledger_count,
                                         expected_head=run.ledger_head)
            assert report["ok"], report
            assert len(records) == run.ledger_count
            keys = [r["idempotency_key"] for r in records
                    if r["kind"] == "effect" and r["status"] == "completed"]
            assert sorted(keys) == sorted(k for r, k in ran if r == rid)
        assert {r.run_id for r in stores.runs.list_runs(status=RunStatus.COMPLETED)} == set(run_ids)
        assert stores.runs.list_runs(status=RunStatus.RUNNING) == []
    finally:
        stores.close()


@pytest.mark.parametrize("lock_timeout, loser", [
    ("0.05", {"busy"}),  # the loser gives up while the winner still holds the run
    ("10", {"not-waiting"}),  # the loser waits, then finds the run no longer waiting
])
def test_two_concurrent_resumes_one_wins(pg_schema: str, tmp_path: Path, lock_timeout: str,
                                         loser: set) -> None:
    log = tmp_path / "side.log"
    wf = ask_workflow(slow=0.3)
    stores = open_stores(pg_schema)
    rs, ls = stores.runs, stores.ledger
    rt = Runtime(run_store=rs, ledger_store=ls)
    try:
        for attempt in range(3):
            go = tmp_path / f"go-{attempt}"
            rid = rt.start(workflow=wf, run_id=f"ask-{attempt}")
            assert rt.tick(run_id=rid, workflow=wf).status == RunStatus.WAITING
            procs = [subprocess.Popen(asset_cmd("resume_worker.py", PG_URL, pg_schema, str(log),
                                                rid, str(go), lock_timeout),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2)]
            for p in procs:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            go.touch()
            results = []
            for p in procs:
                out, err = p.communicate(timeout=60)
                assert p.returncode == 0, err
                results.append(out.strip())
            assert sorted(results) == sorted(["won", *loser]), results
            run = rs.load(rid)
            assert run.status == RunStatus.COMPLETED and run.waiting is None
            records = ls.list(rid)
            assert [r["kind"] for r in records].count("resume") == 1
            assert verify_ledger_chain(records, expected_count=run.ledger_count,
                                       expected_head=run.ledger_head)["ok"]
            assert sum(1 for r, _, _ in read_side_log(str(log)) if r == rid) == 1
            assert rs.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER) == []
    finally:
        stores.close()


def test_a_killed_ticker_frees_its_run_for_another(pg_schema: str, tmp_path: Path) -> None:
    """A process killed mid-tick (holding a run's lock) does not stall that run: another
    process takes it over at once and finishes it, each recorded effect run once."""
    log = tmp_path / "side.log"
    stores = open_stores(pg_schema)
    try:
        proc = start_driver(pg_schema, log, 2, 60)  # drives run-00 first
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        while not any(r == "run-00" for r, _, _ in read_side_log(str(log))):
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        t = time.monotonic()
        with stores.runs.lock("run-00", timeout=10):
            took = time.monotonic() - t
        assert took < 2, took
    finally:
        stores.close()
    finisher = start_driver(pg_schema, log, 2, 60)
    out, _ = finisher.communicate(timeout=300)
    assert finisher.returncode == 0 and out.split() == ["ready", "done"]
    recorded = completed_keys(pg_schema, 2)
    ran = Counter(key for _, key, _ in read_side_log(str(log)))
    assert all(n <= 2 for n in ran.values())
    assert sum(1 for n in ran.values() if n == 2) <= 1  # at most the one in flight
    assert set(ran) == set().union(*recorded.values())
