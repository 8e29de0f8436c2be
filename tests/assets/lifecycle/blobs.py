"""Node code keeps bytes as an artifact, then asks for a file (resume --artifact)."""

from abstractrt_cli import Effect, StepPlan, WorkflowSpec

RAW = b"\x00\xff\xfe\x80binary\x00tail\xc3\x28"  # NUL and bytes that are not UTF-8


def keep(run, ctx):
    run.vars["kept"] = ctx.artifacts.put(RAW, content_type="application/x-raw", tags=["raw"])
    return StepPlan("keep", next_node="ask")


def ask(run, ctx):
    return StepPlan("ask", effect=Effect("ask_user", {"prompt": "upload the file"}, "upload"),
                    next_node="check")


def check(run, ctx):
    info = run.vars["upload"]["artifact"]
    data = ctx.artifacts.get(info["$artifact"])
    return StepPlan("check", complete_output={"size": len(data), "same": len(data) == info["size"]})


blobs = WorkflowSpec(workflow_id="blobs", entry_node="keep",
                     nodes={"keep": keep, "ask": ask, "check": check})
