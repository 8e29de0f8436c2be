"""The workflow the crash and concurrency scripts drive, and its side-effect log.

``counter`` runs ``n`` effect steps of type ``side``; each appends one line
``RUN_ID IDEMPOTENCY_KEY I`` to a side-effect log (fsync'd) *before* it returns, so the
log says which effects really ran, whatever the ledger says.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Tuple

from abstractrt_cli import Effect, StepPlan, WorkflowSpec
from abstractrt_cli.core.policy import compute_idempotency_key


def counter_workflow(n: int) -> WorkflowSpec:
    def step(run: Any, ctx: Any) -> StepPlan:
        i = run.vars.get("i", 0)
        if i >= n:
            return StepPlan("step", complete_output={"i": i})
        return StepPlan("step", effect=Effect("side", {"i": i}, f"out.e{i}"), next_node="inc")

    def inc(run: Any, ctx: Any) -> StepPlan:
        run.vars["i"] = run.vars.get("i", 0) + 1
        return StepPlan("inc", next_node="step")

    return WorkflowSpec("counter", "step", {"step": step, "inc": inc})


def ask_workflow(slow: float) -> WorkflowSpec:
    """Ask, then run one slow ``side`` effect (holding the run's lock meanwhile), then end."""

    def ask(run: Any, ctx: Any) -> StepPlan:
        return StepPlan("ask", effect=Effect("ask_user", {"prompt": "go?"}, "answer"),
                        next_node="work")

    def work(run: Any, ctx: Any) -> StepPlan:
        return StepPlan("work", effect=Effect("side", {"i": 0, "sleep": slow}, "out"),
                        next_node="done")

    def done(run: Any, ctx: Any) -> StepPlan:
        return StepPlan("done", complete_output={"answer": run.vars["answer"]})

    return WorkflowSpec("ask", "ask", {"ask": ask, "work": work, "done": done})


def side_effect_handler(log_path: str):
    def side(run: Any, effect: Any) -> Dict[str, Any]:
        key = compute_idempotency_key(run=run, node_id=run.current_node, effect=effect)
        line = f"{run.run_id} {key} {effect.payload['i']}\n".encode()
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if effect.payload.get("sleep"):
            time.sleep(effect.payload["sleep"])
        return {"i": effect.payload["i"]}

    return side


def read_side_log(path: str) -> List[Tuple[str, str, int]]:
    """(run_id, key, i) per effect that ran; a torn last line (no newline) is ignored."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    out = []
    for line in data.split(b"\n")[:-1]:
        rid, key, i = line.decode().split(" ")
        out.append((rid, key, int(i)))
    return out
