"""Effects per second: abstractrt's file store against LangGraph's best shape, same run.

abstractrt: one node looping on itself, each visit one effect (a trivial handler), on the
file store with fsync on — what ``abstractrt tick`` does. Every effect is one durable
ledger record; the run file is checkpointed every 32 effects and at the end.

LangGraph: the same loop as a one-node ``StateGraph`` that routes back to itself, checkpointed
by ``SqliteSaver`` with ``durability="sync"`` (each step's checkpoint committed before the
next step starts) — the shape that measured fastest among LangGraph's options here.
LangGraph is not a dependency: it runs in the interpreter named by ``--peer-python`` (a
separate virtualenv with ``langgraph`` and ``langgraph-checkpoint-sqlite``), alternating
with abstractrt, so both see the same machine load.

    python bench/effects_peers.py [--effects 1000] [--rounds 3] [--peer-python PATH] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_abstractrt(n: int, workdir: str) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from abstractrt_cli import Effect, Runtime, StepPlan, WorkflowSpec
    from abstractrt_cli.storage import open_stores

    def step(run, ctx):
        i = run.vars.get("i", 0)
        if i >= n:
            return StepPlan("step", complete_output={"i": i})
        run.vars["i"] = i + 1
        return StepPlan("step", effect=Effect("work", {"i": i}, "last"), next_node="step")

    wf = WorkflowSpec("loop", "step", {"step": step})
    stores = open_stores(None, Path(tempfile.mkdtemp(dir=workdir)), create=True)
    rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger,
                 effect_handlers={"work": lambda run, eff: {"ok": eff.payload["i"]}})
    rid = rt.start(workflow=wf)
    t0 = time.perf_counter()
    run = rt.tick(run_id=rid, workflow=wf, max_steps=n + 10)
    dt = time.perf_counter() - t0
    assert run.output == {"i": n}, run.error
    return n / dt


def run_langgraph(n: int, workdir: str) -> float:
    import sqlite3
    from typing import TypedDict

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        i: int

    def step(state: State) -> State:
        return {"i": state["i"] + 1}

    g = StateGraph(State)
    g.add_node("step", step)
    g.add_edge(START, "step")
    g.add_conditional_edges("step", lambda s: END if s["i"] >= n else "step")
    conn = sqlite3.connect(str(Path(tempfile.mkdtemp(dir=workdir)) / "lg.sqlite"),
                           check_same_thread=False)
    app = g.compile(checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": "t1"}, "recursion_limit": n + 10}
    t0 = time.perf_counter()
    out = app.invoke({"i": 0}, cfg, durability="sync")
    dt = time.perf_counter() - t0
    assert out["i"] == n
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--effects", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peer-python", default="/work/lgvenv/bin/python")
    ap.add_argument("--dir", default=None, help="where the stores go (same disk matters)")
    ap.add_argument("--only", choices=["abstractrt", "langgraph"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    workdir = a.dir or tempfile.mkdtemp()
    if a.only:
        fn = run_abstractrt if a.only == "abstractrt" else run_langgraph
        print(json.dumps(fn(a.effects, workdir)))
        return
    ours, peer = [], []
    for _ in range(a.rounds):
        for who, py, sink in (("abstractrt", sys.executable, ours), ("langgraph", a.peer_python, peer)):
            out = subprocess.run([py, __file__, "--only", who, "--effects", str(a.effects),
                                  "--dir", workdir], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{who} failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            sink.append(json.loads(out.stdout))
    print(f"{a.effects} effects, {a.rounds} alternating rounds (effects/s: best, median)")
    for who, xs in (("abstractrt (files, fsync on)", ours), ("LangGraph SqliteSaver sync", peer)):
        if xs:
            print(f"  {who:30s} {max(xs):8,.0f} {statistics.median(xs):8,.0f}")
    if ours and peer:
        print(f"  ratio (median) {statistics.median(ours) / statistics.median(peer):.2f}x, "
              f"(best) {max(ours) / max(peer):.2f}x")


if __name__ == "__main__":
    main()
