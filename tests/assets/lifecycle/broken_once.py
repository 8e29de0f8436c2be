"""An effect, then a node that fails while the file vars["flag"] exists."""

import os

from abstractrt_cli import Effect, StepPlan, WorkflowSpec


def work(run, effect):
    with open(effect.payload["side"], "a", encoding="utf-8") as f:
        f.write("work\n")
    return {"ok": True}


EFFECT_HANDLERS = {"work": work}


def prepare(run, ctx):
    return StepPlan("prepare", effect=Effect("work", {"side": run.vars["side"]}, "prepared"),
                    next_node="check")


def check(run, ctx):
    if os.path.exists(run.vars["flag"]):
        raise RuntimeError("the flag file is there")
    return StepPlan("check", next_node="finish")


def reset(run, ctx):
    run.vars["reset"] = True
    return StepPlan("reset", next_node="check")


def finish(run, ctx):
    return StepPlan("finish", complete_output={"prepared": run.vars["prepared"],
                                               "reset": run.vars.get("reset", False)})


broken_once = WorkflowSpec(workflow_id="broken_once", entry_node="prepare",
                           nodes={"prepare": prepare, "check": check, "reset": reset,
                                  "finish": finish})
