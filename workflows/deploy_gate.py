"""Deploy gate: wait for an external event (CI result) delivered with ``abstractrt emit``.

Vars: ``service`` (default web), ``version`` (default 1.0.0). The run waits on the key
``ci:{service}:{version}``; several runs may wait on the same key and one ``emit``
resumes them all:  abstractrt emit ci:web:1.0.0 --set status=green
"""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec


def prepare(run, ctx):
    run.vars.setdefault("service", "web")
    run.vars.setdefault("version", "1.0.0")
    return StepPlan(node_id="prepare", next_node="wait_ci")


def wait_ci(run, ctx):
    v = run.vars
    return StepPlan(
        node_id="wait_ci",
        effect=Effect(
            EffectType.WAIT_EVENT,
            {"wait_key": f"ci:{v['service']}:{v['version']}",
             "prompt": f"CI result for {v['service']} {v['version']}"},
            result_key="ci",
        ),
        next_node="decide",
    )


def decide(run, ctx):
    v = run.vars
    green = (v.get("ci") or {}).get("status") == "green"
    return StepPlan(node_id="decide", complete_output={
        "service": v["service"], "version": v["version"], "deployed": green,
        "ci": v.get("ci")})


deploy_gate = WorkflowSpec(
    workflow_id="deploy_gate",
    entry_node="prepare",
    nodes={"prepare": prepare, "wait_ci": wait_ci, "decide": decide},
)
