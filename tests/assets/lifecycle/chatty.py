"""Prints vars["kib"] KiB of text in one step, then completes (the log keeps 1 MiB)."""

from abstractrt_cli import StepPlan, WorkflowSpec


def talk(run, ctx):
    line = "x" * 1023
    for _ in range(int(run.vars.get("kib", 1))):
        print(line)
    print("the last line")
    return StepPlan("talk", complete_output={})


chatty = WorkflowSpec(workflow_id="chatty", entry_node="talk", nodes={"talk": talk})
