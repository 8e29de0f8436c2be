"""A parent whose child asks a question (parents, children, and what waits on what)."""

from abstractrt_cli import Effect, StepPlan, WorkflowSpec


def ask(run, ctx):
    return StepPlan("ask", effect=Effect("ask_user", {"prompt": "child?"}, "answer"),
                    next_node="done")


def child_done(run, ctx):
    return StepPlan("done", complete_output={"answer": run.vars["answer"]["response"]})


child = WorkflowSpec(workflow_id="child", entry_node="ask", nodes={"ask": ask, "done": child_done})


def spawn(run, ctx):
    return StepPlan("spawn", effect=Effect("start_subworkflow", {"workflow_id": "child"}, "sub"),
                    next_node="done")


def parent_done(run, ctx):
    return StepPlan("done", complete_output={"child": run.vars["sub"]["output"]})


parent = WorkflowSpec(workflow_id="parent", entry_node="spawn",
                      nodes={"spawn": spawn, "done": parent_done})
