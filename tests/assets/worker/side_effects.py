"""Workflows for the worker tests: effects that count each execution in a side file.

``effects``: ``steps`` effects one after the other (vars ``side``: the side file,
``steps``: how many, default 3, ``sleep``: at most how many seconds each effect takes
until the file ``<side>.go`` exists, default 0). Each
execution appends ``<run id> <step> <token>`` to the side file (O_APPEND: whole lines,
even from several processes) and returns the token, which the run keeps in
``vars["tokens"]``: the ledger then says which execution of a step was recorded.
A slow effect first appends ``<run id> <step>`` to ``<side>.started``.
"""

import os
import time
import uuid

from abstractrt_cli import Effect, StepPlan, WorkflowSpec


def _append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def side(run, effect, next_node):
    p = effect.payload
    if p.get("sleep"):
        _append(p["side"] + ".started", f"{run.run_id} {p['n']}\n")
        # Slow until the test says go (the file ``<side>.go``), for at most ``sleep`` s.
        deadline = time.monotonic() + p["sleep"]
        while time.monotonic() < deadline and not os.path.exists(p["side"] + ".go"):
            time.sleep(0.02)
    token = uuid.uuid4().hex
    _append(p["side"], f"{run.run_id} {p['n']} {token}\n")
    return {"token": token}


EFFECT_HANDLERS = {"side": side}


def step(run, ctx):
    v = run.vars
    n = v.setdefault("n", 0)
    if n >= v.get("steps", 3):
        return StepPlan(node_id="step", complete_output={"tokens": v.get("tokens", [])})
    return StepPlan(node_id="step", next_node="count",
                    effect=Effect("side", {"side": v["side"], "n": n, "sleep": v.get("sleep", 0)},
                                  result_key="last"))


def count(run, ctx):
    v = run.vars
    v.setdefault("tokens", []).append(v["last"]["token"])
    v["n"] += 1
    return StepPlan(node_id="count", next_node="step")


effects = WorkflowSpec(workflow_id="effects", entry_node="step", nodes={"step": step, "count": count})
