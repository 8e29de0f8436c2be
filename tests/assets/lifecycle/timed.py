"""A timer and a person's wait with a deadline (doctor's overdue checks)."""

from abstractrt_cli import Effect, StepPlan, WorkflowSpec


def sleep(run, ctx):
    return StepPlan("sleep", effect=Effect("wait_until", {"until": run.vars["until"]}, "woke"),
                    next_node="done")


def done(run, ctx):
    return StepPlan("done", complete_output={})


timer = WorkflowSpec(workflow_id="timer", entry_node="sleep", nodes={"sleep": sleep, "done": done})


def ask(run, ctx):
    return StepPlan("ask", effect=Effect("ask_user", {"prompt": "in time?", "timeout": "1m"},
                                         "answer"), next_node="done")


deadline = WorkflowSpec(workflow_id="deadline", entry_node="ask", nodes={"ask": ask, "done": done})
