"""``kill -9`` a process driving runs through the file stores, again and again.

After every kill: every run file parses, every ledger verifies against its run's
checkpoint, the index agrees with the run files, and no effect whose completion is in a
ledger ever runs again. At the end a clean run of the driver finishes every run, and
each effect ran exactly once — or twice if it was in flight (run, not yet recorded)
when a kill came.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Set

import pytest

from abstractrt_cli.core.models import RunStatus
from abstractrt_cli.storage import open_file_stores, verify_ledger_chain

ASSETS = Path(__file__).parent / "assets" / "storage"
sys.path.insert(0, str(ASSETS))
from crash_driver import run_ids  # noqa: E402

from workflows import read_side_log  # noqa: E402

N_RUNS = 6
N_EFFECTS = 500
KILLS = 25

pytestmark = pytest.mark.slow


def start_driver(data: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ASSETS / "crash_driver.py"), str(data), str(log), str(N_RUNS),
         str(N_EFFECTS)], stdout=subprocess.PIPE, text=True)


def completed_keys(data: Path) -> Dict[str, Set[str]]:
    """Per run, the idempotency keys whose completion the ledger records — after
    checking that every run file parses, every ledger verifies and the index agrees."""
    rs, ls = open_file_stores(data)
    try:
        out: Dict[str, Set[str]] = {}
        by_status: Dict[RunStatus, Set[str]] = {}
        for rid in run_ids(N_RUNS):
            run = rs.load(rid)  # raises CorruptRunError for a torn file
            records = ls.list(rid)  # raises CorruptLedgerError for a bad line
            if run is None:
                # Killed while starting it: at most its start record, appended before
                # the run file is written.
                assert [r["kind"] for r in records] in ([], ["start"]), records
                continue
            by_status.setdefault(run.status, set()).add(rid)
            report = verify_ledger_chain(records, expected_count=run.ledger_count,
                                         expected_head=run.ledger_head)
            assert report["ok"], (rid, report)
            keys = [r["idempotency_key"] for r in records
                    if r["kind"] == "effect" and r["status"] == "completed"]
            assert len(keys) == len(set(keys)), f"{rid}: an effect was recorded twice"
            # The checkpoint may lag the ledger (the kernel rolls what is beyond it forward),
            # never lead it.
            assert len(records) >= run.ledger_count, (rid, len(records), run.ledger_count)
            out[rid] = set(keys)
        for status in RunStatus:  # the index tells the truth
            assert {r.run_id for r in rs.list_runs(status=status)} == by_status.get(status, set())
        return out
    finally:
        rs.close()


def _ledger_ahead(data: Path, rid: str) -> bool:
    rs, ls = open_file_stores(data)
    try:
        run = rs.load(rid)
        return run is not None and ls.head(rid)[0] > run.ledger_count
    finally:
        rs.close()


def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "side-effects.log"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20240607")))
    frozen: Dict[str, int] = {}  # key -> times it had run when its completion was first seen
    in_flight_at_kill: Counter = Counter()
    kills = ledger_ahead = 0
    t_start = time.monotonic()
    for _ in range(KILLS):
        proc = start_driver(data, log)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # Some kills land early (while runs are being created), most anywhere later.
        time.sleep(rng.uniform(0.0, 0.02) if rng.random() < 0.3 else rng.uniform(0.02, 0.3))
        proc.kill()
        proc.wait()
        proc.stdout.close()
        kills += 1

        recorded = completed_keys(data)
        ran = Counter(key for _, key, _ in read_side_log(str(log)))
        all_recorded = set().union(*recorded.values()) if recorded else set()
        for key in all_recorded:
            frozen.setdefault(key, ran[key])
            assert ran[key] == frozen[key], f"effect {key} ran again after it was recorded"
        unrecorded = [k for k in ran if k not in all_recorded]
        # One process, one effect at a time: at most one ran without being recorded yet.
        assert len(unrecorded) <= 1, unrecorded
        for key in unrecorded:
            in_flight_at_kill[key] += 1
            assert ran[key] <= in_flight_at_kill[key]
        ledger_ahead += sum(1 for rid in recorded if _ledger_ahead(data, rid))
        if all(len(v) == N_EFFECTS for v in recorded.values()) and len(recorded) == N_RUNS:
            break  # everything finished before we could kill it

    proc = start_driver(data, log)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.split() == ["ready", "done"], out

    recorded = completed_keys(data)
    ran = Counter(key for _, key, _ in read_side_log(str(log)))
    rs, ls = open_file_stores(data)
    try:
        for rid in run_ids(N_RUNS):
            run = rs.load(rid)
            assert run is not None and run.status == RunStatus.COMPLETED, rid
            assert run.vars["i"] == N_EFFECTS
            assert run.vars["out"] == {f"e{i}": {"i": i} for i in range(N_EFFECTS)}
            assert len(recorded[rid]) == N_EFFECTS
            logged = [i for r, _, i in read_side_log(str(log)) if r == rid]
            assert set(logged) == set(range(N_EFFECTS))
    finally:
        rs.close()
    all_recorded = set().union(*recorded.values())
    assert set(ran) == all_recorded
    for key, times in ran.items():
        assert times >= 1
        if key in frozen:
            assert times == frozen[key], f"effect {key} ran again after it was recorded"
        assert times <= 1 + in_flight_at_kill[key], (key, times, in_flight_at_kill[key])
    twice = sum(1 for t in ran.values() if t > 1)
    assert twice <= kills
    print(f"{kills} kills; {ledger_ahead} left a ledger record past its run's checkpoint; "
          f"{sum(in_flight_at_kill.values())} caught an effect in flight; "
          f"{twice} effects ran twice")
    assert time.monotonic() - t_start < 90
