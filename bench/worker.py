"""What ``abstractrt worker`` costs and how fast it reacts (PRODUCT §7, issue 11).

    python bench/worker.py                         # files; PostgreSQL too when
                                                   # ABSTRACTRT_TEST_PG_URL is set
    python bench/worker.py --rounds 1000 --busy-rounds 1500 --idle 60 --samples 10
    bash scripts/pg.sh run -- python bench/worker.py

Measures:

1. Memory across ``--rounds`` rounds of one worker in this process (``ops.worker.Worker``:
   ``round()``, ``heartbeat()``, ``next_sleep()``, ``listen(0)``, as ``run()`` does them, but
   without the sleep), beside 200 runs waiting (on people, on timers due in a day) that
   every round's queries pass over: once with nothing to move, once with a new run every
   round that the round moves (three effects, to completion, with an ``on_complete``
   hook). Reported: RSS and Python heap (``tracemalloc``) after round 10, 100, then every
   10 % up to the last; the growth between round 100 and the last, and the files it is
   allocated in (the file store keeps bounded caches: ledger tails of its last 1,024
   runs, ids of 8,192).
2. Idle cost of a real ``abstractrt worker`` process (default interval, 5 s) over
   ``--idle`` seconds: CPU time, system calls that read and write (``/proc/PID/io``), and
   the bytes it writes, with an empty store and with 1,000 runs waiting (on people, and
   timers due in a day).
3. Reaction: a real worker with ``--interval 60`` sleeping; ``abstractrt start --no-tick``
   of a one-effect run; the time from the run's creation to its completion by the worker
   (the run's own ``created_at`` and ``updated_at``), ``--samples`` times, median and max. And a timer due 2 s
   after it is set: how late after its due time the worker completed it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORKFLOWS = '''
"""Workflows for bench/worker.py."""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec


def work(run, effect, next_node):
    return {"n": effect.payload["n"]}


EFFECT_HANDLERS = {"work": work}


def step(run, ctx):
    n = run.vars.setdefault("n", 0)
    if n >= run.vars.get("steps", 3):
        return StepPlan(node_id="step", complete_output={"n": n})
    return StepPlan(node_id="step", next_node="count",
                    effect=Effect("work", {"n": n}, result_key="last"))


def count(run, ctx):
    run.vars["n"] += 1
    return StepPlan(node_id="count", next_node="step")


def ask(run, ctx):
    return StepPlan(node_id="ask", next_node="ask",
                    effect=Effect(EffectType.ASK_USER, {"prompt": "Say something"}, result_key="x"))


def nap(run, ctx):
    return StepPlan(node_id="nap", next_node="ask",
                    effect=Effect(EffectType.WAIT_UNTIL, {"until": run.vars["until"]}))


work_flow = WorkflowSpec("work", "step", {"step": step, "count": count})
asking = WorkflowSpec("asking", "ask", {"ask": ask})
napping = WorkflowSpec("napping", "nap", {"nap": nap, "ask": ask})
'''

ABSTRACTRT = Path(sys.executable).parent / "abstractrt"


class World:
    """A data dir (or a PostgreSQL database), a workflows dir, an isolated environment."""

    def __init__(self, root: Path, store: Optional[str]) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.workflows = root / "workflows"
        self.workflows.mkdir(parents=True)
        (self.workflows / "bench.py").write_text(textwrap.dedent(WORKFLOWS))
        self.config = root / "config.yaml"
        self.config.write_text("")
        self.store = store
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
        self.env.update(ABSTRACTRT_DATA_DIR=str(self.data_dir), ABSTRACTRT_WORKFLOWS=str(self.workflows),
                        ABSTRACTRT_CONFIG=str(self.config), XDG_CONFIG_HOME=str(root / "xdg"),
                        ABSTRACTRT_ACTOR="bench", NO_COLOR="1")
        if store:
            self.env["ABSTRACTRT_STORE"] = store

    def settings(self) -> Any:
        from abstractrt_cli.settings import resolve

        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(self.env)
            return resolve()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def runtime(self) -> Any:
        from abstractrt_cli.core.runtime import Runtime
        from abstractrt_cli.loader import load_workflows
        from abstractrt_cli.storage import open_stores

        stores = open_stores(self.store, self.data_dir, create=True)
        return Runtime(run_store=stores.runs, ledger_store=stores.ledger,
                       workflow_registry=load_workflows(self.workflows).registry), stores

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ABSTRACTRT), *args], env=self.env, capture_output=True,
                              text=True, timeout=120)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


# ---------------------------------------------------------------------------- 1. memory


def memory(world: World, rounds: int, busy: bool) -> Dict[str, Any]:
    """``rounds`` rounds; ``busy``: each moves a new run (three effects and a hook)."""
    from abstractrt_cli.ops.worker import Worker

    world.config.write_text(json.dumps({"hooks": {"on_complete": "true"}}))
    rt, stores = world.runtime()
    reg = rt.workflow_registry
    later = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    for i in range(200):  # passed over by every round's queries
        rid = rt.start(workflow=reg.get("asking" if i % 2 else "napping"), vars={"until": later})
        rt.tick(run_id=rid)
    w = Worker(world.settings(), interval=5.0, max_steps=100, say=lambda line: None)
    # As run() does, without sleeping: listen(0) stands for the sleep's wake-up check.
    w.s.stores.listen(0)
    base = min(100, rounds // 2)  # growth is measured from here (after warming up)
    marks = sorted({10, base, rounds} | {rounds * k // 10 for k in range(1, 11)} - {0})
    points = []
    tracemalloc.start(1)
    snap = None
    t0 = time.perf_counter()
    for i in range(1, rounds + 1):
        if busy:
            rt.start(workflow=reg.get("work"), vars={"steps": 3})
        summary = w.round()
        w.heartbeat()
        w.next_sleep(summary)
        w.s.stores.listen(0)
        if summary.moved != int(busy) or summary.errors:
            raise SystemExit(f"round {i} moved {summary.moved} runs: {summary.errors}")
        if i in marks:
            gc.collect()  # what is garbage is not growth
            current, _peak = tracemalloc.get_traced_memory()
            points.append((i, rss_bytes(), current))
        if i == base:
            snap = tracemalloc.take_snapshot()
    elapsed = time.perf_counter() - t0
    assert snap is not None
    gc.collect()
    by_file = tracemalloc.take_snapshot().compare_to(snap, "filename")
    tracemalloc.stop()
    w.close()
    stores.close()
    world.config.write_text("")
    first = next(p for p in points if p[0] == base)
    last = points[-1]
    per_round = (last[2] - first[2]) / max(1, last[0] - first[0])
    what = ("each moved a new run through 3 effects to completion, with an on_complete hook"
            if busy else "nothing to move")
    print(f"  {rounds} rounds, {what}; 200 runs waiting beside; "
          f"{elapsed / rounds * 1000:.1f} ms a round")
    for i, rss, heap in points:
        print(f"    after round {i:>5}: RSS {mib(rss)}, Python heap {mib(heap)}")
    print(f"  growth from round {base} to {last[0]}: RSS {mib(last[1] - first[1])}, heap "
          f"{(last[2] - first[2]) / 1024:.1f} KiB ({per_round:.0f} bytes a round)")
    grown = [st for st in by_file if st.size_diff > 1024]
    for st in grown[:5]:
        where = st.traceback[0].filename.replace(str(REPO) + os.sep, "")
        print(f"    {st.size_diff / 1024:8.1f} KiB in {where}")
    return {"rounds": rounds, "points": points, "heap_bytes_per_round": per_round}


# ---------------------------------------------------------------------------- 2. idle cost


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_io(pid: int) -> Dict[str, int]:
    try:
        with open(f"/proc/{pid}/io") as f:
            return {k: int(v) for k, v in (line.split(": ") for line in f.read().splitlines())}
    except OSError:  # not readable in some containers
        return {}


def start_worker(world: World, *args: str) -> subprocess.Popen:
    p = subprocess.Popen([str(ABSTRACTRT), "worker", *args], env=world.env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    line = p.stderr.readline()
    if " started: " not in line:
        raise SystemExit(f"the worker did not start: {line}{p.stderr.read()}")
    return p


def stop_worker(p: subprocess.Popen) -> None:
    p.terminate()
    p.wait(timeout=60)


def idle(world: World, seconds: float, label: str) -> Dict[str, Any]:
    p = start_worker(world)
    try:
        time.sleep(5)  # start-up and the first rounds are not "idle"
        cpu0, io0 = proc_cpu(p.pid), proc_io(p.pid)
        time.sleep(seconds)
        cpu1, io1 = proc_cpu(p.pid), proc_io(p.pid)
    finally:
        stop_worker(p)
    cpu = cpu1 - cpu0
    per_min = 60.0 / seconds
    out = {"cpu_seconds": cpu, "cpu_pct": 100 * cpu / seconds}
    text = f"  idle, {label}: {cpu * per_min * 1000:.0f} ms CPU a minute ({out['cpu_pct']:.2f} % of a core)"
    if io0 and io1:
        out.update({k: (io1[k] - io0[k]) * per_min for k in ("syscr", "syscw", "wchar", "write_bytes")})
        text += (f"; a minute: {out['syscr']:.0f} read and {out['syscw']:.0f} write system calls, "
                 f"{out['wchar'] / 1024:.1f} KiB written ({out['write_bytes'] / 1024:.0f} KiB to disk)")
    print(text)
    return out


def fill_waiting(world: World, n: int) -> None:
    rt, stores = world.runtime()
    reg = rt.workflow_registry
    later = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    for i in range(n):
        if i % 2:
            rid = rt.start(workflow=reg.get("asking"), vars={})
        else:
            rid = rt.start(workflow=reg.get("napping"), vars={"until": later})
        rt.tick(run_id=rid)
    stores.close()


# ---------------------------------------------------------------------------- 3. reaction


def load(world: World, run_id: str) -> Any:
    from abstractrt_cli.storage import open_stores

    stores = open_stores(world.store, world.data_dir, create=False)
    try:
        return stores.runs.load(run_id)
    finally:
        stores.close()


def wait_done(world: World, run_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = load(world, run_id)
        if run is not None and run.status.value in ("completed", "failed"):
            return run
        time.sleep(0.05)
    raise SystemExit(f"run {run_id} did not complete within {timeout} s")


def reaction(world: World, samples: int) -> Dict[str, Any]:
    from abstractrt_cli.core.timeutil import parse_timestamp

    p = start_worker(world, "--interval", "60")
    lat: List[float] = []
    late: List[float] = []
    try:
        time.sleep(2)
        for _ in range(samples):
            cp = world.cli("start", "work", "--set", "steps=1", "--no-tick", "--json")
            run = wait_done(world, json.loads(cp.stdout)["run_id"])
            # From the run's creation (start wakes the worker right after committing it)
            # to its completion by the worker: both times are the store's own.
            lat.append((parse_timestamp(run.updated_at) - parse_timestamp(run.created_at))
                       .total_seconds())
            time.sleep(0.5)
        for _ in range(max(1, samples // 3)):
            until = datetime.now(timezone.utc) + timedelta(seconds=2)
            cp = world.cli("start", "napping", "--set", f"until={until.isoformat()}", "--json")
            rid = json.loads(cp.stdout)["run_id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the timer's end takes it to its prompt
                run = load(world, rid)
                if run.waiting is not None and run.waiting.reason.value == "user":
                    break
                time.sleep(0.05)
            late.append((parse_timestamp(run.updated_at) - until).total_seconds())
    finally:
        stop_worker(p)
    print(f"  start --no-tick -> completed, worker --interval 60 asleep: median "
          f"{statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms ({len(lat)} runs)")
    print(f"  timer due in 2 s -> moved: median {statistics.median(late) * 1000:.0f} ms after "
          f"its due time, max {max(late) * 1000:.0f} ms ({len(late)} timers)")
    return {"wake_latency": lat, "timer_lateness": late}


# ---------------------------------------------------------------------------- main


def pg_database(url: str) -> Any:
    import psycopg

    name = f"bench_worker_{secrets.token_hex(3)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return url.rsplit("/", 1)[0] + "/" + name, drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1000, help="rounds with nothing to move")
    ap.add_argument("--busy-rounds", type=int, default=1500,
                    help="rounds that each move a run (past the file store's 1,024-run cache)")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idling measured")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--skip", action="append", default=[], choices=["memory", "idle", "reaction", "pg"])
    args = ap.parse_args()

    stores = [("files", None)]
    pg_url = os.environ.get("ABSTRACTRT_TEST_PG_URL")
    if pg_url and "pg" not in args.skip:
        stores.append(("postgresql", pg_url))
    for kind, url in stores:
        drop = None
        if url:
            url, drop = pg_database(url)
        print(f"== {kind} store")
        try:
            for part in ("memory", "memory busy", "idle", "reaction"):
                if part.split()[0] in args.skip:
                    continue
                root = Path(tempfile.mkdtemp(prefix=f"bench-worker-{part.split()[0]}-"))
                try:
                    world = World(root, url)
                    if part.startswith("memory"):
                        busy = part == "memory busy"
                        memory(world, args.busy_rounds if busy else args.rounds, busy=busy)
                    elif part == "idle":
                        idle(world, args.idle, "empty store")
                        fill_waiting(world, 1000)
                        idle(world, args.idle, "1,000 runs waiting (people, timers in a day)")
                    else:
                        reaction(world, args.samples)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                    if url:  # each part on a fresh database
                        drop()
                        url, drop = pg_database(pg_url)
        finally:
            if drop:
                drop()


if __name__ == "__main__":
    main()
