"""File-store benchmark: abstractrt's durable stores vs AbstractRuntime 0.2.0's own.

Workloads, each on a fresh data dir, abstractrt with fsync on:
  * pure      2,000 pure steps in one run;
  * effects   1,000 effect steps in one run (1 ledger append + 1 run save each), with the
              mean time per effect of the first 100 and of the last 100;
  * starts    1,000 starts, each ticked until its ``ask_user`` wait; then
  * resumes   1,000 resumes, each ticked to completion;
  * stored N  N runs already stored (N = 2,000 and 20,000; 200,000 with --big), mostly
              completed or waiting on users, 100 due on a ``wait_until``: the time to find
              the due ones, to find and tick them, and to list the waiting ones — each in
              a fresh store (a new process's view: no warm caches but the OS's); and,
              abstractrt only, ``earliest_due()`` (what a worker asks before it sleeps).

With ``--parts``, abstractrt's parts of part two alone (fsync on): the cost of keeping an
event, of finding a run's oldest unreceived event for a key among 10 kept for it with
none and with ``--other`` events of other keys kept, of a receipt; of storing and reading
back a 1 MiB artifact; of a snapshot; of a log append.

abstractrt also runs the starts and resumes with ``fsync=False``, to show what the
durability costs on this disk (AbstractRuntime never fsyncs: that row is the like for
like comparison of everything else); and the *floor* rows time the bare file operations
that PRODUCT §3's durability rules ask of a start and of a resume (``w_floor``), with no
Python work at all: where AbstractRuntime's unsynced start is faster than that floor, no
file store that keeps the rules can match it on this disk.

AbstractRuntime runs the same workloads with ``JsonFileRunStore`` and ``JsonlLedgerStore``
(wrapped in its ``HashChainedLedgerStore`` for the effect workload). It never fsyncs, so
its writes are cheaper than ours by construction: the ratio column is AbstractRuntime's
time over ours (> 1: abstractrt is faster). Without ``abstractruntime`` installed its
column says n/a.

    python bench/storage.py [--big] [--sizes 2000,20000] [--dir DIR] [--parts [--other N]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

WINDOW = 100
N_PURE = 2000
N_EFFECTS = 1000
N_STARTS = 1000
N_DUE = 100

try:
    import abstractruntime as ar
except ImportError:  # pragma: no cover - depends on the environment
    ar = None


Row = Tuple[str, Optional[float], Optional[float], str]  # name, ours (s), theirs (s), unit note


# ---------------------------------------------------------------------------- the machine


def primitives(tmp: str, n: int = 300) -> Dict[str, float]:
    """What one fsync'd append and one atomic replace cost here, right now (ms)."""
    d = tempfile.mkdtemp(dir=tmp)
    line = (json.dumps({"x": "y" * 300}) + "\n").encode()
    fd = os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t = time.perf_counter()
    for _ in range(n):
        os.write(fd, line)
        os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
    append = (time.perf_counter() - t) / n * 1000
    os.close(fd)
    data = json.dumps({"v": "y" * 1500}, indent=2).encode()
    t = time.perf_counter()
    for _ in range(n):
        tmp_path = os.path.join(d, ".r.tmp")
        f = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(f, data)
        os.fsync(f)
        os.close(f)
        os.replace(tmp_path, os.path.join(d, "r.json"))
        dfd = os.open(d, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    replace = (time.perf_counter() - t) / n * 1000
    shutil.rmtree(d)
    return {"append_ms": append, "replace_ms": replace}


def w_floor(tmp: str, n: int = N_STARTS) -> Dict[str, float]:
    """The file operations alone that PRODUCT §3's rules ask of any store, per start and per
    resume, with no Python work around them: what no file store that keeps those rules can
    go below on this disk. A start: create the ledger, append its records and fdatasync,
    write the run to a temp file and fsync it, rename it into place and fsync the directory
    (one directory fsync for both new names). A resume: the same on the existing files."""
    d = tempfile.mkdtemp(dir=tmp)
    dfd = os.open(d, os.O_RDONLY)
    records = (json.dumps({"x": "y" * 600}) + "\n").encode() * 3
    state = json.dumps({"v": "y" * 900}, indent=2).encode()

    def save_run(name: str) -> None:
        tmp_name = "." + name + ".tmp"
        f = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
        os.write(f, state)
        os.fsync(f)
        os.close(f)
        os.replace(tmp_name, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)

    def starts() -> None:
        for i in range(n):
            fd = os.open(f"{i}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600,
                         dir_fd=dfd)
            os.write(fd, records)
            os.fdatasync(fd)
            os.close(fd)
            save_run(f"{i}.json")

    def resumes() -> None:
        for i in range(n):
            fd = os.open(f"{i}.jsonl", os.O_WRONLY | os.O_APPEND, dir_fd=dfd)
            os.write(fd, records)
            os.fdatasync(fd)
            os.close(fd)
            save_run(f"{i}.json")

    t_start, _ = timed(starts)
    t_resume, _ = timed(resumes)
    os.close(dfd)
    shutil.rmtree(d)
    return {"starts_s": t_start, "resumes_s": t_resume}


# ---------------------------------------------------------------------------- workflows


def _chain(n: int, plan: Callable[[str, Optional[str], str], Any]) -> Dict[str, Callable]:
    nodes: Dict[str, Callable] = {}
    for i in range(n):
        nxt = f"n{i + 1}" if i + 1 < n else "end"
        nodes[f"n{i}"] = (lambda nid, to: lambda run, ctx: plan(nid, to, "step"))(f"n{i}", nxt)
    nodes["end"] = lambda run, ctx: plan("end", None, "end")
    return nodes


class Side:
    """Which package's classes to build workflows and runs from."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "ours":
            import abstractrt_cli as m
            self.Effect, self.StepPlan, self.WorkflowSpec = m.Effect, m.StepPlan, m.WorkflowSpec
            self.TOOL, self.ASK, self.WAIT_UNTIL = "tool_calls", "ask_user", "wait_until"
        else:
            m = ar
            self.Effect, self.StepPlan, self.WorkflowSpec = m.Effect, m.StepPlan, m.WorkflowSpec
            self.TOOL = m.EffectType.TOOL_CALLS
            self.ASK, self.WAIT_UNTIL = m.EffectType.ASK_USER, m.EffectType.WAIT_UNTIL
        self.m = m

    def pure_workflow(self, n: int) -> Any:
        def plan(nid: str, nxt: Optional[str], kind: str) -> Any:
            if kind == "end":
                return self.StepPlan(nid, complete_output={"done": True})
            return self.StepPlan(nid, next_node=nxt)
        return self.WorkflowSpec("pure", "n0", _chain(n, plan))

    def effect_workflow(self, n: int) -> Any:
        def plan(nid: str, nxt: Optional[str], kind: str) -> Any:
            if kind == "end":
                return self.StepPlan(nid, complete_output={"done": True})
            return self.StepPlan(nid, effect=self.Effect(self.TOOL, {"node": nid}, "last"),
                                 next_node=nxt)
        return self.WorkflowSpec("effects", "n0", _chain(n, plan))

    def ask_workflow(self) -> Any:
        """``ask`` -> ``done``; stored runs may also sit at ``wait`` (a wait_until)."""
        nodes = {
            "ask": lambda run, ctx: self.StepPlan(
                "ask", effect=self.Effect(self.ASK, {"prompt": "Deploy?"}, "answer"),
                next_node="done"),
            "wait": lambda run, ctx: self.StepPlan(
                "wait", effect=self.Effect(self.WAIT_UNTIL, {"until": "2000-01-01T00:00:00+00:00"},
                                           "timer"), next_node="done"),
            "done": lambda run, ctx: self.StepPlan("done", complete_output={"ok": True}),
        }
        return self.WorkflowSpec("ask", "ask", nodes)


class Ours:
    """abstractrt with its file stores (fsync on)."""

    name = "abstractrt"

    def __init__(self, data_dir: str, *, fsync: bool = True) -> None:
        from abstractrt_cli import Runtime
        from abstractrt_cli.storage import open_file_stores

        self.side = Side("ours")
        self.data_dir = data_dir
        self.rs, self.ls = open_file_stores(data_dir, fsync=fsync)
        self.stamps: List[float] = []
        self.rt = Runtime(run_store=self.rs, ledger_store=self.ls,
                          effect_handlers={"tool_calls": self._tool})

    def _tool(self, run: Any, effect: Any) -> Dict[str, Any]:
        self.stamps.append(time.perf_counter())
        return {"ok": True}

    def start(self, wf: Any) -> str:
        return self.rt.start(workflow=wf)

    def start_ticked(self, wf: Any) -> Any:
        """What ``abstractrt start`` does: start and tick, one checkpoint."""
        return self.rt.start_and_tick(workflow=wf)

    def tick(self, wf: Any, run_id: str, max_steps: int = 100) -> Any:
        return self.rt.tick(run_id=run_id, workflow=wf, max_steps=max_steps)

    def resume(self, wf: Any, run_id: str, payload: Dict[str, Any]) -> Any:
        return self.rt.resume(run_id=run_id, workflow=wf, payload=payload)

    def populate(self, n: int, n_due: int, now: datetime) -> None:
        """N stored runs written straight to their files, then the index rebuilt."""
        from abstractrt_cli.core.models import RunState, RunStatus, WaitReason, WaitState

        for i in range(n):
            run = _stored_run(i, n_due, now, RunState, RunStatus, WaitState, WaitReason)
            path = self.rs.path_of(run.run_id)
            try:
                f = open(path, "w", encoding="utf-8")
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                f = open(path, "w", encoding="utf-8")
            with f:
                json.dump(run.to_jsonable(), f, indent=2)
        t = time.perf_counter()
        self.rs.rebuild_index()
        self.rebuild_s = time.perf_counter() - t

    def reopen(self) -> "Ours":
        self.rs.close()
        return Ours(self.data_dir)

    def due(self, now: datetime) -> List[Any]:
        return self.rs.list_due_wait_until(now=now)

    def earliest_due(self) -> Any:
        return self.rs.earliest_due()

    def waiting(self) -> List[Any]:
        from abstractrt_cli.core.models import RunStatus
        return self.rs.list_runs(status=RunStatus.WAITING)

    def close(self) -> None:
        self.rs.close()


class Theirs:
    """AbstractRuntime 0.2.0 with its JSON file stores."""

    name = "AbstractRuntime"

    def __init__(self, data_dir: str, *, chained: bool = False) -> None:
        self.side = Side("ar")
        self.data_dir = data_dir
        self.rs = ar.JsonFileRunStore(data_dir)
        inner = ar.JsonlLedgerStore(data_dir)
        self.ls = ar.HashChainedLedgerStore(inner) if chained else inner
        self.stamps: List[float] = []
        self.rt = ar.Runtime(run_store=self.rs, ledger_store=self.ls,
                             effect_handlers={ar.EffectType.TOOL_CALLS: self._tool})

    def _tool(self, run: Any, effect: Any) -> Any:
        self.stamps.append(time.perf_counter())
        from abstractruntime.core.runtime import EffectOutcome
        return EffectOutcome.completed({"ok": True})

    def start(self, wf: Any) -> str:
        return self.rt.start(workflow=wf)

    def tick(self, wf: Any, run_id: str, max_steps: int = 100) -> Any:
        return self.rt.tick(workflow=wf, run_id=run_id, max_steps=max_steps)

    def resume(self, wf: Any, run_id: str, payload: Dict[str, Any]) -> Any:
        return self.rt.resume(workflow=wf, run_id=run_id, wait_key=None, payload=payload)

    def populate(self, n: int, n_due: int, now: datetime) -> None:
        from abstractruntime.core.models import RunState, RunStatus, WaitReason, WaitState

        for i in range(n):
            self.rs.save(_stored_run(i, n_due, now, RunState, RunStatus, WaitState, WaitReason))
        self.rebuild_s = None

    def reopen(self) -> "Theirs":
        return Theirs(self.data_dir)

    def due(self, now: datetime) -> List[Any]:
        return self.rs.list_due_wait_until(now_iso=now.isoformat(), limit=10**9)

    def waiting(self) -> List[Any]:
        return self.rs.list_runs(status=ar.RunStatus.WAITING, limit=10**9)

    def close(self) -> None:
        pass


def _stored_run(i: int, n_due: int, now: datetime, RunState: Any, RunStatus: Any,
                WaitState: Any, WaitReason: Any) -> Any:
    """Run i of a big store: 100 due timers, then 40 % waiting on users, the rest completed."""
    created = (now - timedelta(days=30) + timedelta(seconds=i)).isoformat()
    common = dict(run_id=f"{i % 16:x}{i:07d}-stored", workflow_id="ask", created_at=created,
                  updated_at=created,
                  vars={"_limits": {"max_iterations": 25}, "customer": f"c{i}", "amount": i})
    if i < n_due:
        until = (now - timedelta(minutes=1 + i)).isoformat()
        return RunState(status=RunStatus.WAITING, current_node="wait",
                        waiting=WaitState(reason=WaitReason.UNTIL, until=until,
                                          resume_to_node="done", result_key="timer"), **common)
    if i % 5 < 2:
        return RunState(status=RunStatus.WAITING, current_node="ask",
                        waiting=WaitState(reason=WaitReason.USER, wait_key=f"user:{i}:ask",
                                          prompt="Deploy?", resume_to_node="done",
                                          result_key="answer"), **common)
    return RunState(status=RunStatus.COMPLETED, current_node="done", output={"ok": True}, **common)


# ---------------------------------------------------------------------------- workloads


def timed(fn: Callable[[], Any]) -> Tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def w_pure(make: Callable[[str], Any], tmp: str) -> Dict[str, float]:
    kit = make(tempfile.mkdtemp(dir=tmp))
    wf = kit.side.pure_workflow(N_PURE)
    rid = kit.start(wf)
    dt, run = timed(lambda: kit.tick(wf, rid, max_steps=N_PURE + 10))
    assert getattr(run.status, "value", run.status) == "completed", run.status
    kit.close()
    return {"s": dt}


def w_effects(make: Callable[[str], Any], tmp: str) -> Dict[str, float]:
    kit = make(tempfile.mkdtemp(dir=tmp))
    wf = kit.side.effect_workflow(N_EFFECTS)
    rid = kit.start(wf)
    dt, run = timed(lambda: kit.tick(wf, rid, max_steps=N_EFFECTS + 10))
    assert getattr(run.status, "value", run.status) == "completed", run.status
    gaps = [b - a for a, b in zip(kit.stamps[:-1], kit.stamps[1:], strict=True)]
    kit.close()
    return {"s": dt, "first_ms": sum(gaps[:WINDOW]) / WINDOW * 1000,
            "last_ms": sum(gaps[-WINDOW:]) / WINDOW * 1000}


def w_starts_resumes(make: Callable[[str], Any], tmp: str) -> Dict[str, float]:
    kit = make(tempfile.mkdtemp(dir=tmp))
    wf = kit.side.ask_workflow()

    def starts() -> List[str]:
        out = []
        for _ in range(N_STARTS):
            if hasattr(kit, "start_ticked"):
                run = kit.start_ticked(wf)
                rid = run.run_id
            else:  # AbstractRuntime: start, then tick
                rid = kit.start(wf)
                run = kit.tick(wf, rid)
            assert getattr(run.status, "value", run.status) == "waiting"
            out.append(rid)
        return out

    t_start, ids = timed(starts)

    def resumes() -> None:
        for rid in ids:
            run = kit.resume(wf, rid, {"response": "yes"})
            assert getattr(run.status, "value", run.status) == "completed"

    t_resume, _ = timed(resumes)
    kit.close()
    return {"starts_s": t_start, "resumes_s": t_resume}


def w_stored(make: Callable[[str], Any], tmp: str, n: int) -> Dict[str, float]:
    now = datetime.now(timezone.utc)
    d = tempfile.mkdtemp(dir=tmp)
    kit = make(d)
    t_pop, _ = timed(lambda: kit.populate(n, N_DUE, now))
    rebuild = kit.rebuild_s
    kit = kit.reopen()
    wf = kit.side.ask_workflow()
    t_due, due = timed(lambda: kit.due(now))
    assert len(due) == N_DUE, len(due)

    def tick_due() -> None:
        for run in due:
            out = kit.tick(wf, run.run_id)
            assert getattr(out.status, "value", out.status) == "completed", out.status

    t_tick, _ = timed(tick_due)
    kit = kit.reopen()
    earliest = getattr(kit, "earliest_due", None)
    t_earliest = timed(earliest)[0] if earliest is not None else None
    kit = kit.reopen()
    t_wait, waiting = timed(kit.waiting)
    expected = sum(1 for i in range(N_DUE, n) if i % 5 < 2)
    assert len(waiting) == expected, (len(waiting), expected)
    kit.close()
    shutil.rmtree(d)
    return {"populate_s": t_pop, "rebuild_s": rebuild, "due_s": t_due, "due_tick_s": t_due + t_tick,
            "waiting_s": t_wait, "waiting_n": len(waiting), "earliest_s": t_earliest}


# ---------------------------------------------------------------------------- part two


def w_parts(tmp: str, n_other: int) -> List[Tuple[str, float]]:
    """(what, seconds per operation) for the event mailbox, artifacts, snapshots, logs."""
    from abstractrt_cli.core.models import KeptEvent
    from abstractrt_cli.storage import open_file_bundle

    d = tempfile.mkdtemp(dir=tmp)
    s = open_file_bundle(d)
    base = datetime(2030, 1, 1, tzinfo=timezone.utc)
    early = base - timedelta(days=1)

    def event(eid: str, key: str, i: int) -> KeptEvent:
        at = base + timedelta(microseconds=i)
        return KeptEvent(event_id=eid, key=key, payload={"i": i}, emitted_at=at.isoformat(),
                         expires_at=(at + timedelta(days=7)).isoformat())

    out: List[Tuple[str, float]] = []
    n = 200
    t, _ = timed(lambda: [s.events.put(event(f"hot-{i}", "hot", i)) for i in range(n)])
    out.append(("keep an event (emit)", t / n))
    for i in range(10):
        s.events.put(event(f"mine-{i}", "mine", i))

    def lookups(k: int = 200) -> float:
        t, _ = timed(lambda: [s.events.oldest_unreceived("mine", run_id="r", emitted_after=early,
                                                         now=base) for _ in range(k)])
        return t / k

    out.append(("oldest unreceived, 10 for its key, few others", lookups()))
    fast = open_file_bundle(d, fsync=False)  # (only to populate quicker)
    for i in range(n_other):
        fast.events.put(event(f"other-{i}", f"key-{i % 100}", i))
    fast.close()
    out.append((f"oldest unreceived, 10 for its key, {n_other:,} others", lookups()))
    t, _ = timed(lambda: [s.events.mark_received(f"hot-{i}", "r") for i in range(n)])
    out.append(("mark received", t / n))
    blob = os.urandom(1 << 20)
    t, meta = timed(lambda: s.artifacts.put_artifact(blob, run_id="r"))
    out.append(("put a 1 MiB artifact", t))
    t, _ = timed(lambda: s.artifacts.get_artifact(meta["ref"]))
    out.append(("get a 1 MiB artifact (hash checked)", t))
    state = {"run_id": "r", "workflow_id": "w", "status": "waiting", "current_node": "n",
             "vars": {"x": "y" * 1000}}
    t, _ = timed(lambda: [s.snapshots.put_snapshot({"run_id": "r", "name": f"s{i}", "tags": [],
                                                    "state": state, "created_at": base.isoformat()})
                          for i in range(50)])
    out.append(("keep a snapshot", t / 50))
    line = [{"at": base.isoformat(), "node_id": "n", "effect_seq": 0, "stream": "stdout",
             "text": "x" * 200 + "\n"}]
    t, _ = timed(lambda: [s.logs.append_log("r", line) for _ in range(1000)])
    out.append(("append a log entry", t / 1000))
    s.close()
    shutil.rmtree(d)
    return out


# ---------------------------------------------------------------------------- report


def _get(result: Optional[Dict[str, Any]], key: str, scale: float = 1.0) -> Optional[float]:
    return result[key] / scale if result else None


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "n/a"
    return f"{s * 1000:.1f} ms" if s < 10 else f"{s:.1f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", action="store_true", help="also 200,000 stored runs (minutes)")
    ap.add_argument("--sizes", default="2000,20000", help="stored-run counts (comma-separated)")
    ap.add_argument("--dir", default=None, help="where to make the data dirs (same disk matters)")
    ap.add_argument("--parts", action="store_true", help="only the parts of part two (events...)")
    ap.add_argument("--other", type=int, default=20_000, help="events of other keys (--parts)")
    args = ap.parse_args()
    if args.parts:
        tmp = tempfile.mkdtemp(prefix="abstractrt-bench-", dir=args.dir)
        try:
            for what, sec in w_parts(tmp, args.other):
                print(f"  {what:<52} {sec * 1000:8.3f} ms")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.big:
        sizes.append(200_000)
    tmp = tempfile.mkdtemp(prefix="abstractrt-bench-", dir=args.dir)
    have_ar = ar is not None
    try:
        prim = primitives(tmp)
        print(f"this disk, now: fsync'd append {prim['append_ms']:.3f} ms, "
              f"atomic replace (fsync file + rename + fsync dir) {prim['replace_ms']:.3f} ms")
        version = getattr(ar, "__version__", "0.2.0") if have_ar else "not installed"
        print(f"AbstractRuntime: {version} (its file stores never fsync)\n")
        ours = Ours
        theirs: Optional[Callable[[str], Any]] = (lambda d: Theirs(d)) if have_ar else None
        theirs_chained: Optional[Callable[[str], Any]] = (
            (lambda d: Theirs(d, chained=True)) if have_ar else None)
        rows: List[Tuple[str, str, str, str, str]] = []

        def add(name: str, a: float, b: Optional[float], rate_n: Optional[int] = None) -> None:
            ratio = f"{b / a:.1f}x" if a and b else "n/a"
            if rate_n:
                ra = f"{rate_n / a:,.0f}/s ({fmt_time(a)})"
                rb = f"{rate_n / b:,.0f}/s ({fmt_time(b)})" if b else "n/a"
            else:
                ra, rb = fmt_time(a), fmt_time(b)
            rows.append((name, ra, rb, ratio, ""))
            print(f"  {name}: {ra} | {rb} | {ratio}", flush=True)

        print("running workloads…", flush=True)
        p_o = w_pure(ours, tmp)
        p_t = w_pure(theirs, tmp) if theirs else None
        add(f"{N_PURE:,} pure steps, one run", p_o["s"], _get(p_t, "s"), N_PURE)
        e_o = w_effects(ours, tmp)
        e_t = w_effects(theirs_chained, tmp) if theirs_chained else None
        add(f"{N_EFFECTS:,} effects, one run", e_o["s"], _get(e_t, "s"), N_EFFECTS)
        add("  per effect, first 100", e_o["first_ms"] / 1000, _get(e_t, "first_ms", 1000))
        add("  per effect, last 100", e_o["last_ms"] / 1000, _get(e_t, "last_ms", 1000))
        s_o = w_starts_resumes(ours, tmp)
        s_t = w_starts_resumes(theirs, tmp) if theirs else None
        add(f"{N_STARTS:,} starts (tick to ask_user)", s_o["starts_s"],
            _get(s_t, "starts_s"), N_STARTS)
        add(f"{N_STARTS:,} resumes (tick to end)", s_o["resumes_s"],
            _get(s_t, "resumes_s"), N_STARTS)
        s_n = w_starts_resumes(lambda d: Ours(d, fsync=False), tmp)
        add("  starts, abstractrt with fsync off", s_n["starts_s"], _get(s_t, "starts_s"),
            N_STARTS)
        add("  resumes, abstractrt with fsync off", s_n["resumes_s"], _get(s_t, "resumes_s"),
            N_STARTS)
        fl = w_floor(tmp)
        add("  starts, §3's file operations alone (floor)", fl["starts_s"], _get(s_t, "starts_s"),
            N_STARTS)
        add("  resumes, §3's file operations alone (floor)", fl["resumes_s"],
            _get(s_t, "resumes_s"), N_STARTS)
        for n in sizes:
            st_o = w_stored(ours, tmp, n)
            st_t = w_stored(theirs, tmp, n) if theirs else None
            add(f"{n:,} stored: find {N_DUE} due", st_o["due_s"], _get(st_t, "due_s"))
            add(f"{n:,} stored: find + tick {N_DUE} due", st_o["due_tick_s"],
                _get(st_t, "due_tick_s"))
            add(f"{n:,} stored: list {st_o['waiting_n']:,} waiting", st_o["waiting_s"],
                _get(st_t, "waiting_s"))
            add(f"{n:,} stored: earliest due (abstractrt only)", st_o["earliest_s"], None)
            print(f"    (abstractrt: index rebuilt from {n:,} run files in "
                  f"{fmt_time(st_o['rebuild_s'])})", flush=True)

        w = max(len(r[0]) for r in rows)
        wa = max(len(r[1]) for r in rows + [("", "abstractrt", "", "", "")])
        wb = max(len(r[2]) for r in rows + [("", "", "AbstractRuntime", "", "")])
        print()
        print(f"{'workload':<{w}}  {'abstractrt':>{wa}}  {'AbstractRuntime':>{wb}}  ratio")
        print("-" * (w + wa + wb + 11))
        for name, a, b, ratio, _ in rows:
            print(f"{name:<{w}}  {a:>{wa}}  {b:>{wb}}  {ratio:>5}")
        print("\nratio = AbstractRuntime's time / abstractrt's (> 1: abstractrt is faster)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
