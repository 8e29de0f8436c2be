"""PostgreSQL store benchmark, with DBOS Transact measured on the same server in the same run.

Workloads, each in a fresh schema of one database (PostgreSQL's defaults: fsync on,
synchronous commit):
  * pure      2,000 pure steps in one run (one tick);
  * effects   1,000 effect steps in one run, with the mean time per effect of the first
              100 and of the last 100 (a growing ledger must not slow appends down);
  * starts    1,000 starts, each ticked to its ``ask_user`` wait; then
  * resumes   1,000 resumes, each ticked to completion;
  * stored    20,000 runs already stored (40 % waiting on users, 100 due timers, the rest
              completed): finding the due ones, ticking them, listing the waiting ones,
              from a freshly opened store;
  * scale     400 runs of 5 effects, moved by 1 ``tick --all``-style process, then by 2
              at once (each its own connections, as two machines would be).

For every workload: round trips (statements sent) per step, counted in the client, and —
when the server has ``pg_stat_statements`` loaded — statements the server ran, counted
there. DBOS Transact (3.4, from its own virtualenv: never installed into this project)
runs the effect workload as 1,000 ``@DBOS.step`` calls in one workflow and the
start/resume workload as 1,000 workflows that ``DBOS.recv``, each then sent a message
and awaited; it gets a database of its own on the same server.

    python bench/postgres.py [--url URL] [--dbos-python /work/dbosvenv/bin/python] [--quick]

Without ``--url`` (or ABSTRACTRT_TEST_PG_URL) it starts a throw-away server with
``scripts/pg.sh`` (``pg_stat_statements`` preloaded) and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WINDOW = 100
DBOS_DB = "dbos_bench"


class Sizes:
    def __init__(self, quick: bool) -> None:
        k = 10 if quick else 1
        self.pure = 2000 // k
        self.effects = 1000 // k
        self.starts = 1000 // k
        self.stored = 20000 // k
        self.due = 100 // k
        self.scale_runs = 400 // k
        self.scale_effects = 5


# ---------------------------------------------------------------------------- counting


class RoundTrips:
    """Statements this process sends (each one a round trip: nothing here pipelines)."""

    n = 0

    @classmethod
    def install(cls) -> None:
        import psycopg

        original = psycopg.Connection.execute

        def counted(self: Any, *a: Any, **kw: Any) -> Any:
            cls.n += 1
            return original(self, *a, **kw)

        psycopg.Connection.execute = counted  # type: ignore[method-assign]


class ServerStatements:
    """Statements the server ran in one database (pg_stat_statements), if it is loaded."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(_with_db(url, "postgres"), autocommit=True)
        loaded = "pg_stat_statements" in self.conn.execute(
            "SHOW shared_preload_libraries").fetchone()[0]
        self.ok = False
        if loaded:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self.ok = True

    def count(self, db: str) -> Optional[int]:
        if not self.ok:
            return None
        row = self.conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d "
            "ON d.oid = s.dbid WHERE d.datname = %s", (db,)).fetchone()
        return int(row[0])

    def exec_ms(self, db: str) -> Optional[float]:
        """Milliseconds the server spent planning and executing statements in ``db``."""
        if not self.ok:
            return None
        row = self.conn.execute(
            "SELECT coalesce(sum(total_exec_time + total_plan_time), 0) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s", (db,)).fetchone()
        return float(row[0])

    def close(self) -> None:
        self.conn.close()


def _with_db(url: str, db: str) -> str:
    base, _, rest = url.rpartition("/")
    query = ("?" + rest.split("?", 1)[1]) if "?" in rest else ""
    return f"{base}/{db}{query}"


def _db_of(url: str) -> str:
    return url.rpartition("/")[2].split("?", 1)[0]


# ---------------------------------------------------------------------------- workflows


def _workflows() -> Dict[str, Callable[..., Any]]:
    from abstractrt_cli import Effect, StepPlan, WorkflowSpec

    def chain(n: int, effect: bool) -> Any:
        nodes: Dict[str, Callable] = {}
        for i in range(n):
            nxt = f"n{i + 1}" if i + 1 < n else "end"
            if effect:
                nodes[f"n{i}"] = (lambda nid, to: lambda run, ctx: StepPlan(
                    nid, effect=Effect("tool_calls", {"node": nid}, "last"), next_node=to))(f"n{i}", nxt)
            else:
                nodes[f"n{i}"] = (lambda nid, to: lambda run, ctx: StepPlan(nid, next_node=to))(
                    f"n{i}", nxt)
        nodes["end"] = lambda run, ctx: StepPlan("end", complete_output={"done": True})
        return WorkflowSpec("effects" if effect else "pure", "n0", nodes)

    def ask() -> Any:
        nodes = {
            "ask": lambda run, ctx: StepPlan(
                "ask", effect=Effect("ask_user", {"prompt": "Deploy?"}, "answer"), next_node="done"),
            "wait": lambda run, ctx: StepPlan(
                "wait", effect=Effect("wait_until", {"until": "2000-01-01T00:00:00+00:00"}, "timer"),
                next_node="done"),
            "done": lambda run, ctx: StepPlan("done", complete_output={"ok": True}),
        }
        return WorkflowSpec("ask", "ask", nodes)

    return {"chain": chain, "ask": ask}


class Kit:
    """abstractrt over a fresh schema of the benchmark database."""

    def __init__(self, url: str, schema: str) -> None:
        from abstractrt_cli import Runtime
        from abstractrt_cli.storage.postgres import open_postgres_stores

        self.url, self.schema = url, schema
        self.stores = open_postgres_stores(url, schema=schema)
        self.stamps: List[float] = []
        self.rt = Runtime(run_store=self.stores.runs, ledger_store=self.stores.ledger,
                          effect_handlers={"tool_calls": self._tool})
        self.wf = _workflows()

    def _tool(self, run: Any, effect: Any) -> Dict[str, Any]:
        self.stamps.append(time.perf_counter())
        return {"ok": True}

    def close(self, drop: bool = True) -> None:
        self.stores.close()
        if drop:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


_schemas = iter(range(10**6))


def new_kit(url: str) -> Kit:
    return Kit(url, f"bench_{os.getpid()}_{next(_schemas)}")


def measured(fn: Callable[[], Any], server: ServerStatements, db: str
             ) -> Tuple[float, int, Optional[int], Any]:
    s0 = server.count(db)
    r0 = RoundTrips.n
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    rts = RoundTrips.n - r0  # before the statistics query below, which is counted too
    s1 = server.count(db)
    return dt, rts, (s1 - s0) if s0 is not None and s1 is not None else None, out


# ---------------------------------------------------------------------------- our workloads


def w_pure(url: str, sizes: Sizes, server: ServerStatements) -> Dict[str, Any]:
    kit = new_kit(url)
    wf = kit.wf["chain"](sizes.pure, False)
    rid = kit.rt.start(workflow=wf)
    dt, rts, stmts, run = measured(lambda: kit.rt.tick(run_id=rid, workflow=wf,
                                                       max_steps=sizes.pure + 10),
                                   server, _db_of(url))
    assert run.status.value == "completed", run.status
    kit.close()
    return {"s": dt, "steps_per_s": sizes.pure / dt, "round_trips": rts, "server_statements": stmts}


def w_effects(url: str, sizes: Sizes, server: ServerStatements) -> Dict[str, Any]:
    kit = new_kit(url)
    n = sizes.effects
    wf = kit.wf["chain"](n, True)
    rid = kit.rt.start(workflow=wf)
    t0 = time.perf_counter()
    dt, rts, stmts, run = measured(lambda: kit.rt.tick(run_id=rid, workflow=wf, max_steps=2 * n + 10),
                                   server, _db_of(url))
    assert run.status.value == "completed", run.status
    st = [t0] + kit.stamps
    gaps = [b - a for a, b in zip(st, st[1:])]
    w = min(WINDOW, len(gaps) // 2)
    kit.close()
    return {"s": dt, "effects_per_s": n / dt,
            "first_ms": sum(gaps[1:w + 1]) / w * 1000, "last_ms": sum(gaps[-w:]) / w * 1000,
            "round_trips_per_effect": rts / n,
            "server_statements_per_effect": stmts / n if stmts is not None else None}


def w_starts(url: str, sizes: Sizes, server: ServerStatements) -> Dict[str, Any]:
    kit = new_kit(url)
    wf = kit.wf["ask"]()
    n = sizes.starts
    ids: List[str] = []

    def starts() -> None:
        for _ in range(n):
            rid = kit.rt.start(workflow=wf)
            assert kit.rt.tick(run_id=rid, workflow=wf).status.value == "waiting"
            ids.append(rid)

    def resumes() -> None:
        for rid in ids:
            assert kit.rt.resume(run_id=rid, workflow=wf,
                                 payload={"response": "yes"}).status.value == "completed"

    ds, rs_, ss, _ = measured(starts, server, _db_of(url))
    dr, rr, sr, _ = measured(resumes, server, _db_of(url))
    kit.close()
    return {"starts_per_s": n / ds, "resumes_per_s": n / dr, "runs_per_s": n / (ds + dr),
            "round_trips_per_start": rs_ / n, "round_trips_per_resume": rr / n,
            "server_statements_per_start": ss / n if ss is not None else None,
            "server_statements_per_resume": sr / n if sr is not None else None}


def _populate(kit: Kit, n: int, n_due: int, now: datetime) -> None:
    """``n`` stored runs written with COPY (the columns exactly as the store writes them)."""
    from abstractrt_cli.core.models import RunState, RunStatus, WaitReason, WaitState
    from abstractrt_cli.storage.postgres.store import _row_params

    cols = ("rid", "status", "workflow_id", "wait_reason", "wait_key", "due_at", "parent",
            "created", "updated", "state")
    conn = kit.stores.runs.db.connector.session().conn
    with conn.cursor() as cur:
        with cur.copy(f"COPY {kit.schema}.runs (run_id, status, workflow_id, wait_reason, wait_key, "
                      "due_at, parent_run_id, created_at, updated_at, state) FROM STDIN") as copy:
            for i in range(n):
                created = (now - timedelta(days=30) + timedelta(seconds=i)).isoformat()
                common = dict(run_id=f"{i % 16:x}{i:07d}-stored", workflow_id="ask",
                              created_at=created, updated_at=created,
                              vars={"_limits": {"max_iterations": 25}, "customer": f"c{i}"})
                if i < n_due:
                    run = RunState(status=RunStatus.WAITING, current_node="wait",
                                   waiting=WaitState(reason=WaitReason.UNTIL,
                                                     until=(now - timedelta(minutes=1 + i)).isoformat(),
                                                     resume_to_node="done", result_key="timer"),
                                   **common)
                elif i % 5 < 2:
                    run = RunState(status=RunStatus.WAITING, current_node="ask",
                                   waiting=WaitState(reason=WaitReason.USER, wait_key=f"user:{i}:ask",
                                                     prompt="Deploy?", resume_to_node="done",
                                                     result_key="answer"), **common)
                else:
                    run = RunState(status=RunStatus.COMPLETED, current_node="done",
                                   output={"ok": True}, **common)
                p = _row_params(run)
                copy.write_row([p[c] for c in cols])
    conn.execute(f"ANALYZE {kit.schema}.runs")


def w_stored(url: str, sizes: Sizes, server: ServerStatements) -> Dict[str, Any]:
    from abstractrt_cli.core.models import RunStatus

    now = datetime.now(timezone.utc)
    kit = new_kit(url)
    t = time.perf_counter()
    _populate(kit, sizes.stored, sizes.due, now)
    populate_s = time.perf_counter() - t
    kit.close(drop=False)
    fresh = Kit(url, kit.schema)
    wf = fresh.wf["ask"]()
    db = _db_of(url)
    d_due, r_due, _, due = measured(lambda: fresh.stores.runs.list_due_wait_until(now=now), server, db)
    assert len(due) == sizes.due, len(due)

    def tick_due() -> None:
        for run in fresh.stores.runs.list_due_wait_until(now=now):
            assert fresh.rt.tick(run_id=run.run_id, workflow=wf).status.value == "completed"

    d_tick, r_tick, _, _ = measured(tick_due, server, db)
    d_wait, r_wait, _, waiting = measured(
        lambda: fresh.stores.runs.list_runs(status=RunStatus.WAITING, limit=50), server, db)
    d_all, _, _, all_waiting = measured(
        lambda: fresh.stores.runs.list_runs(status=RunStatus.WAITING), server, db)
    d_early, _, _, _ = measured(fresh.stores.runs.earliest_due, server, db)
    fresh.close()
    return {"populate_s": populate_s, "due_query_ms": d_due * 1000, "due_round_trips": r_due,
            "tick_due_s": d_tick, "tick_due_round_trips_per_run": r_tick / sizes.due,
            "waiting_50_ms": d_wait * 1000, "waiting_all_ms": d_all * 1000,
            "waiting_all": len(all_waiting), "earliest_due_ms": d_early * 1000}


def w_scale(url: str, sizes: Sizes, server: ServerStatements, repeats: int = 5) -> Dict[str, Any]:
    """1 process, then 2, ``repeats`` times over, alternating, so that whatever else the
    machine is doing weighs on both alike; the speed-ups of the medians and of the bests."""
    tries: Dict[str, List[Dict[str, Any]]] = {"1p": [], "2p": []}
    for _ in range(repeats):
        for procs in (1, 2):
            tries[f"{procs}p"].append(_scale_once(url, sizes, procs, server))
    rates = {k: sorted(r["effects_per_s"] for r in v) for k, v in tries.items()}
    out: Dict[str, Any] = {k: max(v, key=lambda r: r["effects_per_s"]) for k, v in tries.items()}
    out["all_effects_per_s"] = {k: [round(r["effects_per_s"], 1) for r in v] for k, v in tries.items()}
    out["median_effects_per_s"] = {k: v[len(v) // 2] for k, v in rates.items()}
    out["speedup"] = out["2p"]["effects_per_s"] / out["1p"]["effects_per_s"]
    out["speedup_median"] = out["median_effects_per_s"]["2p"] / out["median_effects_per_s"]["1p"]
    return out


def _scale_once(url: str, sizes: Sizes, procs: int, server: ServerStatements) -> Dict[str, Any]:
    kit = new_kit(url)
    wf = kit.wf["chain"](sizes.scale_effects, True)
    for _ in range(sizes.scale_runs):
        kit.rt.start(workflow=wf)
    kit.stores.close()
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        workers = [subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--ticker", url, kit.schema, go,
             str(sizes.scale_effects)], stdout=subprocess.PIPE, text=True)
            for _ in range(procs)]
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        exec0 = server.exec_ms(_db_of(url))
        t0 = time.time()
        open(go, "w").close()
        stats = [json.loads(w.communicate(timeout=600)[0]) for w in workers]
    wall = max(s["t_end"] for s in stats) - t0
    effects = sizes.scale_runs * sizes.scale_effects
    kit.close()
    exec_ms = server.exec_ms(_db_of(url))
    return {"s": wall, "effects_per_s": effects / wall, "runs_per_s": sizes.scale_runs / wall,
            "ticks": [s["ticks"] for s in stats], "busy": [s["busy"] for s in stats],
            # Where the time went: the tickers' own CPU, and the server's statement time.
            "client_cpu_ms_per_effect": sum(s["cpu_s"] for s in stats) * 1000 / effects,
            "server_exec_ms_per_effect": (exec_ms - exec0) / effects
            if exec_ms is not None and exec0 is not None else None}


def ticker(url: str, schema: str, go: str, n_effects: int) -> int:
    """One ``tick --all``-style process: tick every running run it can lock, until none is."""
    from abstractrt_cli import Runtime, RuntimeConfig
    from abstractrt_cli.core.models import RunStatus
    from abstractrt_cli.errors import RunBusyError
    from abstractrt_cli.storage.postgres import open_postgres_stores

    stores = open_postgres_stores(url, schema=schema)
    wf = _workflows()["chain"](n_effects, True)
    rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger,
                 config=RuntimeConfig(lock_timeout=0),
                 effect_handlers={"tool_calls": lambda run, effect: {"ok": True}},
                 workflow_registry={wf.workflow_id: wf})
    stores.runs.earliest_due()  # connected before the start line
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    cpu0 = sum(os.times()[:2])
    ticks = busy = 0
    while True:
        running = stores.runs.list_runs(status=RunStatus.RUNNING)
        if not running:
            break
        for run in running:
            try:
                rt.tick(run_id=run.run_id, workflow=wf, max_steps=100)
                ticks += 1
            except RunBusyError:
                busy += 1
    t_end = time.time()
    stores.close()
    cpu = sum(os.times()[:2]) - cpu0
    print(json.dumps({"ticks": ticks, "busy": busy, "t_end": t_end, "cpu_s": cpu}), flush=True)
    return 0


# ---------------------------------------------------------------------------- DBOS, in its venv


def dbos_peer(url: str, n_effects: int, n_starts: int) -> int:
    """Runs under DBOS's own interpreter: prints one JSON line of figures."""
    import logging

    from dbos import DBOS, DBOSConfig

    logging.getLogger("dbos").setLevel(logging.WARNING)
    config: DBOSConfig = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)
    stamps: List[float] = []

    @DBOS.step()
    def effect(i: int) -> Dict[str, Any]:
        stamps.append(time.perf_counter())
        return {"ok": True}

    @DBOS.workflow()
    def effects(n: int) -> int:
        for i in range(n):
            effect(i)
        return n

    @DBOS.workflow()
    def waiter() -> Any:
        return DBOS.recv("go", timeout_seconds=3600)

    DBOS.launch()
    server = ServerStatements(url)
    db = _db_of(url)
    s0 = server.count(db)
    t0 = time.perf_counter()
    assert effects(n_effects) == n_effects
    dt = time.perf_counter() - t0
    s1 = server.count(db)
    st = [t0] + stamps
    gaps = [b - a for a, b in zip(st, st[1:])]
    w = min(WINDOW, len(gaps) // 2)
    t = time.perf_counter()
    handles = [DBOS.start_workflow(waiter) for _ in range(n_starts)]
    ds = time.perf_counter() - t
    s2 = server.count(db)
    t = time.perf_counter()
    for h in handles:
        DBOS.send(h.get_workflow_id(), "yes", "go")
    for h in handles:
        assert h.get_result() == "yes"
    dr = time.perf_counter() - t
    s3 = server.count(db)
    DBOS.destroy()
    server.close()

    def per(a: Optional[int], b: Optional[int], n: int) -> Optional[float]:
        return (b - a) / n if a is not None and b is not None else None

    import dbos as dbos_module

    print(json.dumps({
        "version": getattr(dbos_module, "__version__", None) or _dist_version("dbos"),
        "effects_per_s": n_effects / dt, "first_ms": sum(gaps[1:w + 1]) / w * 1000,
        "last_ms": sum(gaps[-w:]) / w * 1000,
        "server_statements_per_effect": per(s0, s1, n_effects),
        "starts_per_s": n_starts / ds, "resumes_per_s": n_starts / dr,
        "runs_per_s": n_starts / (ds + dr),
        "server_statements_per_start": per(s1, s2, n_starts),
        "server_statements_per_resume": per(s2, s3, n_starts)}), flush=True)
    return 0


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def run_dbos(url: str, python: str, sizes: Sizes) -> Dict[str, Any]:
    if not os.path.exists(python):
        return {"skipped": f"no DBOS interpreter at {python} (python -m venv /work/dbosvenv && "
                           "/work/dbosvenv/bin/pip install dbos==3.4.0 'psycopg[binary]')"}
    import psycopg

    with psycopg.connect(_with_db(url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DBOS_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DBOS_DB}")
    try:
        out = subprocess.run([python, os.path.abspath(__file__), "--dbos-peer", _with_db(url, DBOS_DB),
                              str(sizes.effects), str(sizes.starts)],
                             capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            return {"skipped": "DBOS failed: " + out.stderr.strip().splitlines()[-1]}
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(_with_db(url, "postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DBOS_DB} WITH (FORCE)")


# ---------------------------------------------------------------------------- main


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def report(res: Dict[str, Any]) -> str:
    ours, peer = res["abstractrt"], res["dbos"]
    lines = [f"PostgreSQL {res['server']}, DBOS {peer.get('version', 'n/a')}; load average "
             f"{res['load_before'][0]:.1f} before, {res['load_after'][0]:.1f} after "
             f"({os.cpu_count()} cores)"]
    if "skipped" in peer:
        lines.append(f"DBOS: {peer['skipped']}")
    e, s = ours["effects"], ours["starts"]
    rows = [
        ("pure steps/s (2,000 in one run)", ours["pure"]["steps_per_s"], None),
        ("  round trips for the whole tick", ours["pure"]["round_trips"], None),
        ("effects/s (1,000 in one run)", e["effects_per_s"], peer.get("effects_per_s")),
        ("  ms per effect, first 100", e["first_ms"], peer.get("first_ms")),
        ("  ms per effect, last 100", e["last_ms"], peer.get("last_ms")),
        ("  round trips per effect (client)", e["round_trips_per_effect"], None),
        ("  statements per effect (server)", e["server_statements_per_effect"],
         peer.get("server_statements_per_effect")),
        ("starts/s (to the first wait)", s["starts_per_s"], peer.get("starts_per_s")),
        ("resumes/s (to completion)", s["resumes_per_s"], peer.get("resumes_per_s")),
        ("runs/s (start + resume)", s["runs_per_s"], peer.get("runs_per_s")),
        ("  round trips per start / resume", f"{s['round_trips_per_start']:.1f} / "
                                             f"{s['round_trips_per_resume']:.1f}", None),
        ("  statements per start (server)", s["server_statements_per_start"],
         peer.get("server_statements_per_start")),
        ("  statements per resume (server)", s["server_statements_per_resume"],
         peer.get("server_statements_per_resume")),
    ]
    st = ours["stored"]
    rows += [
        (f"due query at {res['sizes']['stored']:,} runs (ms)", st["due_query_ms"], None),
        ("  tick the due ones (s)", st["tick_due_s"], None),
        ("  waiting, 50 newest (ms)", st["waiting_50_ms"], None),
        (f"  waiting, all {st['waiting_all']:,} (ms)", st["waiting_all_ms"], None),
        ("  earliest due (ms)", st["earliest_due_ms"], None),
    ]
    sc = ours["scale"]
    rows += [
        (f"scale: 1 process, {res['sizes']['scale_runs']} runs, best (effects/s)",
         sc["1p"]["effects_per_s"], None),
        ("scale: 2 processes, best (effects/s)", sc["2p"]["effects_per_s"], None),
        ("scale: speed-up, best of each", sc["speedup"], None),
        ("scale: speed-up, median of each", sc["speedup_median"], None),
        ("scale: 1 process, client CPU ms/effect", sc["1p"]["client_cpu_ms_per_effect"], None),
        ("scale: 1 process, server statement ms/effect", sc["1p"]["server_exec_ms_per_effect"], None),
    ]
    w = max(len(r[0]) for r in rows) + 2
    lines.append(f"{'':{w}}{'abstractrt':>12}{'DBOS':>12}")
    for name, a, b in rows:
        lines.append(f"{name:{w}}{_fmt(a, 2):>12}{_fmt(b, 2):>12}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("ABSTRACTRT_TEST_PG_URL"))
    ap.add_argument("--dbos-python", default="/work/dbosvenv/bin/python")
    ap.add_argument("--quick", action="store_true", help="a tenth of every size (a smoke test)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--ticker", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--dbos-peer", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ticker:
        url, schema, go, n = args.ticker
        return ticker(url, schema, go, int(n))
    if args.dbos_peer:
        url, n_effects, n_starts = args.dbos_peer
        return dbos_peer(url, int(n_effects), int(n_starts))
    if not args.url:
        env = dict(os.environ, ABSTRACTRT_PG_OPTS="-c shared_preload_libraries=pg_stat_statements")
        cmd = [sys.executable, *sys.argv]
        return subprocess.call(["bash", os.path.join(ROOT, "scripts", "pg.sh"), "run", "--", *cmd],
                               env=env)

    sizes = Sizes(args.quick)
    RoundTrips.install()
    server = ServerStatements(args.url)
    res: Dict[str, Any] = {"sizes": vars(sizes), "server": server.conn.execute(
        "SHOW server_version").fetchone()[0], "load_before": os.getloadavg()}
    ours: Dict[str, Any] = {}
    for name, fn in (("pure", w_pure), ("effects", w_effects), ("starts", w_starts),
                     ("stored", w_stored)):
        ours[name] = fn(args.url, sizes, server)
        print(f"{name}: done", file=sys.stderr, flush=True)
    ours["scale"] = w_scale(args.url, sizes, server)
    print("scale: done", file=sys.stderr, flush=True)
    res["abstractrt"] = ours
    res["dbos"] = run_dbos(args.url, args.dbos_python, sizes)
    res["load_after"] = os.getloadavg()
    server.close()
    print(json.dumps(res, indent=2) if args.json else report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
