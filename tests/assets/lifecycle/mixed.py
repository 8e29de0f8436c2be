"""Ask, an effect, ask again: every kind of record a fork can be cut at (the answer
"boom" to the second question fails the run)."""

import logging

from abstractrt_cli import Effect, StepPlan, WorkflowSpec


def work(run, effect):
    # A side file counts every time the effect really runs (a fork or retry must not).
    with open(effect.payload["side"], "a", encoding="utf-8") as f:
        f.write(f"work {effect.payload['n']}\n")
    print(f"worked on {effect.payload['n']}")
    return {"n": effect.payload["n"], "done": True}


EFFECT_HANDLERS = {"work": work}


def first(run, ctx):
    print("asking the first question")
    logging.getLogger("mixed").warning("first is asked")
    return StepPlan("first", effect=Effect("ask_user", {"prompt": "first?"}, "first"),
                    next_node="work")


def do_work(run, ctx):
    return StepPlan("work", effect=Effect("work", {"n": 1, "side": run.vars["side"]}, "w1"),
                    next_node="second")


def second(run, ctx):
    run.vars["between"] = run.vars["w1"]["n"] + 1
    return StepPlan("second", effect=Effect("ask_user", {"prompt": "second?"}, "second"),
                    next_node="end")


def end(run, ctx):
    if run.vars["second"]["response"] == "boom":
        raise RuntimeError("asked to fail")
    return StepPlan("end", complete_output={"first": run.vars["first"]["response"],
                                            "second": run.vars["second"]["response"]})


mixed = WorkflowSpec(workflow_id="mixed", entry_node="first",
                     nodes={"first": first, "work": do_work, "second": second, "end": end})
