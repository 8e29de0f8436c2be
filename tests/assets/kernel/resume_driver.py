"""A process that starts or resumes an ask-then-work run on a file store (killed by tests).

    python resume_driver.py DATA_DIR start SIDE_FILE          -> prints the run id
    python resume_driver.py DATA_DIR resume SIDE_FILE RUN ANSWER

The ``work`` effect appends the answer it saw to SIDE_FILE (so the test counts how often
it really ran) and sleeps a little, which widens the window between the resume's ledger
records and the checkpoint that the test aims its ``kill -9`` at.
"""

import sys
import time

from abstractrt_cli import Effect, Runtime, StepPlan, WorkflowRegistry, WorkflowSpec
from abstractrt_cli.storage import open_stores

data_dir, mode, side = sys.argv[1:4]


def work(run, effect):
    with open(side, "a") as f:
        f.write(run.vars["ans"]["response"] + "\n")
    time.sleep(0.015)
    return {"saw": run.vars["ans"]["response"]}


spec = WorkflowSpec("ask_work", "ask", {
    "ask": lambda run, ctx: StepPlan("ask", effect=Effect(
        "ask_user", {"prompt": "pick", "choices": ["a", "b"], "allow_free_text": False}, "ans"),
        next_node="work"),
    "work": lambda run, ctx: StepPlan("work", effect=Effect("work", {}, "w"), next_node="end"),
    "end": lambda run, ctx: StepPlan("end", complete_output={"ans": run.vars["ans"],
                                                             "w": run.vars["w"]}),
})
registry = WorkflowRegistry()
registry.register(spec)
from pathlib import Path  # noqa: E402

stores = open_stores(None, Path(data_dir), create=True)
rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger, workflow_registry=registry,
             effect_handlers={"work": work})
if mode == "start":
    rid = rt.start(workflow=spec)
    rt.tick(run_id=rid)
    print(rid, flush=True)
else:
    print("ready", flush=True)
    rt.resume(run_id=sys.argv[4], payload={"response": sys.argv[5]})
    print("done", flush=True)
