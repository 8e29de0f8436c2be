"""Kernel benchmark with the in-memory stores.

Two workloads, each a single run:
  * pure   — a chain of N pure steps (no effects): steps/s;
  * effect — a chain of N effect steps, each a trivial custom handler: effects/s, and the
             mean time per effect of the first 100 and the last 100 effects. The two must
             be about equal: per-step cost must not grow with the ledger's length.

If AbstractRuntime is importable, the same workloads also run on it (with *its*
in-memory stores) for comparison.

    python bench/kernel.py [--pure 2000] [--effects 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

WINDOW = 100

# Measured on this machine with AbstractRuntime 0.2.0's JSON *file* stores (the brief).
AR_FILE_REFERENCE = {"pure": 3666.0, "effects": 216.0, "growth": 9.7}


def _chain(make_plan: Callable[..., Any], n: int, kind: str) -> Dict[str, Callable]:
    """Nodes n0 … n{n-1}, then ``end``; ``make_plan(node_id, next_node, effect?)``."""
    nodes: Dict[str, Callable] = {}
    for i in range(n):
        nxt = f"n{i + 1}" if i + 1 < n else "end"
        nodes[f"n{i}"] = (lambda node_id, nxt: lambda run, ctx: make_plan(node_id, nxt, kind))(
            f"n{i}", nxt)
    nodes["end"] = lambda run, ctx: make_plan("end", None, "end")
    return nodes


def _summarise(stamps: List[float], total: float, n: int) -> Dict[str, float]:
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    first = sum(gaps[:WINDOW]) / min(WINDOW, len(gaps))
    last = sum(gaps[-WINDOW:]) / min(WINDOW, len(gaps))
    return {"rate": n / total, "first_us": first * 1e6, "last_us": last * 1e6,
            "growth": last / first if first else float("nan")}


# ---------------------------------------------------------------------------- abstractrt


def bench_abstractrt(n_pure: int, n_effects: int) -> Tuple[float, Dict[str, float]]:
    from abstractrt_cli import (
        Effect, InMemoryLedgerStore, InMemoryRunStore, RunStatus, Runtime, StepPlan,
        WorkflowSpec,
    )

    def plan(node_id: str, nxt: Optional[str], kind: str) -> StepPlan:
        if kind == "end":
            return StepPlan(node_id, complete_output={"done": True})
        if kind == "pure":
            return StepPlan(node_id, next_node=nxt)
        return StepPlan(node_id, effect=Effect("noop", {"k": 1}, "last"), next_node=nxt)

    def run(kind: str, n: int, handler: Optional[Callable] = None) -> float:
        wf = WorkflowSpec(f"bench_{kind}", "n0", _chain(plan, n, kind))
        rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore(),
                     effect_handlers={"noop": handler} if handler else None)
        rid = rt.start(workflow=wf)
        t0 = time.perf_counter()
        state = rt.tick(run_id=rid, workflow=wf, max_steps=n + 10)
        elapsed = time.perf_counter() - t0
        assert state.status is RunStatus.COMPLETED, state.error
        return elapsed

    pure = n_pure / run("pure", n_pure)
    stamps: List[float] = []

    def noop(run_state: Any, effect: Any, default_next_node: Optional[str]) -> Dict[str, Any]:
        stamps.append(time.perf_counter())
        return {"ok": True}

    total = run("effect", n_effects, noop)
    return pure, _summarise(stamps, total, n_effects)


# ---------------------------------------------------------------------------- AbstractRuntime


def bench_abstractruntime(n_pure: int, n_effects: int) -> Tuple[float, Dict[str, float]]:
    import abstractruntime as ar
    from abstractruntime.core.runtime import EffectOutcome

    def plan(node_id: str, nxt: Optional[str], kind: str) -> Any:
        if kind == "end":
            return ar.StepPlan(node_id=node_id, complete_output={"done": True})
        if kind == "pure":
            return ar.StepPlan(node_id=node_id, next_node=nxt)
        # AbstractRuntime has no custom string types: a handler for tool_calls stands in.
        return ar.StepPlan(node_id=node_id, next_node=nxt, effect=ar.Effect(
            type=ar.EffectType.TOOL_CALLS, payload={"k": 1}, result_key="last"))

    def run(kind: str, n: int, handler: Optional[Callable] = None) -> float:
        wf = ar.WorkflowSpec(workflow_id=f"bench_{kind}", entry_node="n0",
                             nodes=_chain(plan, n, kind))
        rt = ar.Runtime(run_store=ar.InMemoryRunStore(), ledger_store=ar.InMemoryLedgerStore(),
                        effect_handlers={ar.EffectType.TOOL_CALLS: handler} if handler else None)
        rid = rt.start(workflow=wf)
        t0 = time.perf_counter()
        state = rt.tick(workflow=wf, run_id=rid, max_steps=n + 10)
        elapsed = time.perf_counter() - t0
        assert state.status == ar.RunStatus.COMPLETED, state.error
        return elapsed

    pure = n_pure / run("pure", n_pure)
    stamps: List[float] = []

    def noop(run_state: Any, effect: Any, default_next_node: Optional[str]) -> Any:
        stamps.append(time.perf_counter())
        return EffectOutcome.completed({"ok": True})

    total = run("effect", n_effects, noop)
    return pure, _summarise(stamps, total, n_effects)


# ---------------------------------------------------------------------------- report


def best_of(repeat: int, fn: Callable[..., Tuple[float, Dict[str, float]]], *args: Any
            ) -> Tuple[float, Dict[str, float]]:
    """The run with the best effects/s (and the best pure steps/s), to damp noise."""
    results = [fn(*args) for _ in range(repeat)]
    pure = max(r[0] for r in results)
    eff = max((r[1] for r in results), key=lambda e: e["rate"])
    return pure, eff


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pure", type=int, default=2000, help="pure steps (default 2000)")
    parser.add_argument("--effects", type=int, default=1000, help="effect steps (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    args = parser.parse_args(argv)
    if args.effects < 2 * WINDOW:
        parser.error(f"--effects must be at least {2 * WINDOW}")

    ours = best_of(args.repeat, bench_abstractrt, args.pure, args.effects)
    try:
        import abstractruntime  # noqa: F401
        theirs: Optional[Tuple[float, Dict[str, float]]] = best_of(
            args.repeat, bench_abstractruntime, args.pure, args.effects)
    except ImportError:
        theirs = None

    rows = [
        (f"pure steps/s ({args.pure} steps, one run)", ours[0], theirs and theirs[0], "{:,.0f}"),
        (f"effects/s ({args.effects} effects, one run)", ours[1]["rate"],
         theirs and theirs[1]["rate"], "{:,.0f}"),
        (f"µs per effect, first {WINDOW}", ours[1]["first_us"],
         theirs and theirs[1]["first_us"], "{:,.1f}"),
        (f"µs per effect, last {WINDOW}", ours[1]["last_us"],
         theirs and theirs[1]["last_us"], "{:,.1f}"),
        ("last / first", ours[1]["growth"], theirs and theirs[1]["growth"], "{:.2f}×"),
    ]
    head = ["", "abstractrt"] + (["AbstractRuntime 0.2.0", "abstractrt ÷ AR"] if theirs else [])
    table = [head]
    for label, a, b, fmt in rows:
        row = [label, fmt.format(a)]
        if theirs:
            row += [fmt.format(b), f"{a / b:.2f}×" if b else "-"]
        table.append(row)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print("Kernel benchmark — in-memory stores (best of %d)" % args.repeat)
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                        for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if theirs is None:
        print("(AbstractRuntime not importable: comparison skipped)")
    ref = AR_FILE_REFERENCE
    print(f"Reference, AbstractRuntime 0.2.0 with its JSON file stores on this machine: "
          f"{ref['pure']:,.0f} pure steps/s; {ref['effects']:,.0f} effects/s, "
          f"last {WINDOW} effects {ref['growth']}× the first {WINDOW}.")


if __name__ == "__main__":
    main()
