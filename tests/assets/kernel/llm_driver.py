"""A process that runs an llm_call workflow on a file store (killed by tests).

    LLM_URL=... python llm_driver.py DATA_DIR start      -> prints the run id, ticks
    LLM_URL=... python llm_driver.py DATA_DIR tick RUN   -> prints "<status> <content>"

After the llm_call, the ``slow`` node sleeps (only in the first process) so that a test
can kill -9 it after the answer is recorded but before the run is checkpointed.
"""

import os
import sys
import time
from pathlib import Path

from abstractrt_cli import Effect, Runtime, RuntimeConfig, StepPlan, WorkflowRegistry, WorkflowSpec
from abstractrt_cli.storage import open_stores

data_dir, mode = sys.argv[1:3]


def slow(run, ctx):
    if mode == "start":
        time.sleep(30)
    return StepPlan("slow", complete_output={"content": run.vars["reply"]["content"]})


spec = WorkflowSpec("chat", "ask", {
    "ask": lambda run, ctx: StepPlan("ask", effect=Effect("llm_call", {"prompt": "hi"}, "reply"),
                                     next_node="slow"),
    "slow": slow,
})
registry = WorkflowRegistry()
registry.register(spec)
stores = open_stores(None, Path(data_dir), create=True)
rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger, workflow_registry=registry,
             config=RuntimeConfig(llm={"base_url": os.environ["LLM_URL"], "model": "m"}))
if mode == "start":
    rid = rt.start(workflow=spec)
    print(rid, flush=True)
    rt.tick(run_id=rid)
else:
    run = rt.tick(run_id=sys.argv[3])
    print(run.status.value, (run.output or {}).get("content"))
