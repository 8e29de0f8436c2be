"""Several real processes on one data dir: per-run locks, shared index, no lost update."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import List

import pytest

from abstractrt_cli import Runtime
from abstractrt_cli.core.models import RunStatus, WaitReason
from abstractrt_cli.storage import open_file_stores, verify_ledger_chain

ASSETS = Path(__file__).parent / "assets" / "storage"
sys.path.insert(0, str(ASSETS))
from workflows import ask_workflow, counter_workflow, read_side_log  # noqa: E402

pytestmark = pytest.mark.slow

WORKERS = 4
RUNS = 6
EFFECTS = 40


def spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ASSETS / script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_ticking_the_same_runs(tmp_path: Path) -> None:
    data, log, go = tmp_path / "data", tmp_path / "side.log", tmp_path / "go"
    wf = counter_workflow(EFFECTS)
    rs, ls = open_file_stores(data)
    rt = Runtime(run_store=rs, ledger_store=ls)
    run_ids = [rt.start(workflow=wf, run_id=f"{c}-run") for c in "abcdef"[:RUNS]]
    procs = [spawn("tick_worker.py", str(data), str(log), str(EFFECTS), str(go), *run_ids)
             for _ in range(WORKERS)]
    time.sleep(0.5)  # let them import and wait at the starting line
    go.touch()
    stats = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        stats.append(json.loads(out))
    assert sum(s["busy"] for s in stats) > 0, stats  # they really did collide
    assert sum(1 for s in stats if s["ticks"] > 0) >= 2, stats  # and shared the work
    print(stats)

    ran = Counter((rid, key) for rid, key, _ in read_side_log(str(log)))
    assert all(n == 1 for n in ran.values()), [k for k, n in ran.items() if n > 1]
    rs2, ls2 = open_file_stores(data)
    for rid in run_ids:
        run = rs2.load(rid)
        assert run.status == RunStatus.COMPLETED
        assert run.vars["i"] == EFFECTS  # no lost update
        assert run.vars["out"] == {f"e{i}": {"i": i} for i in range(EFFECTS)}
        assert sum(1 for r, _ in ran if r == rid) == EFFECTS
        records = ls2.list(rid)
        report = verify_ledger_chain(records, expected_count=run.ledger_count,
                                     expected_head=run.ledger_head)
        assert report["ok"], report
        assert len(records) == run.ledger_count  # the final checkpoint covers every record
        keys = [r["idempotency_key"] for r in records if r["kind"] == "effect"]
        assert len(keys) == EFFECTS
        assert sorted(keys) == sorted(k for r, k in ran if r == rid)
    assert {r.run_id for r in rs2.list_runs(status=RunStatus.COMPLETED)} == set(run_ids)
    assert rs2.list_runs(status=RunStatus.RUNNING) == []
    rs.close()
    rs2.close()


@pytest.mark.parametrize("lock_timeout, loser", [
    ("0.05", {"busy"}),  # the loser gives up while the winner still holds the run
    ("10", {"not-waiting"}),  # the loser waits, then finds the run no longer waiting
])
def test_two_concurrent_resumes_one_wins(tmp_path: Path, lock_timeout: str, loser: set) -> None:
    data, log = tmp_path / "data", tmp_path / "side.log"
    wf = ask_workflow(slow=0.3)
    rs, ls = open_file_stores(data)
    rt = Runtime(run_store=rs, ledger_store=ls)
    outcomes: List[str] = []
    for attempt in range(3):
        go = tmp_path / f"go-{attempt}"
        rid = rt.start(workflow=wf, run_id=f"ask-{attempt}")
        assert rt.tick(run_id=rid, workflow=wf).status == RunStatus.WAITING
        procs = [spawn("resume_worker.py", str(data), str(log), rid, str(go), lock_timeout)
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
        outcomes += results
        run = rs.load(rid)
        assert run.status == RunStatus.COMPLETED and run.waiting is None
        records = ls.list(rid)
        assert [r["kind"] for r in records].count("resume") == 1
        assert verify_ledger_chain(records, expected_count=run.ledger_count,
                                   expected_head=run.ledger_head)["ok"]
        assert sum(1 for r, _, _ in read_side_log(str(log)) if r == rid) == 1
        assert rs.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER) == []
    rs.close()
