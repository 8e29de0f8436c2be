"""Expense approval: a manager approves or rejects, then gives a reason for the record.

Vars: ``title`` (what is bought), ``amount`` (a number), ``currency`` (default EUR).
Try it:  abstractrt start approval --set title="New laptop" --set amount=1450
"""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec


def submit(run, ctx):
    # Pure node: normalise the request. Pure steps are checkpointed with the next wait.
    v = run.vars
    v.setdefault("title", "Team offsite catering")
    v.setdefault("amount", 250)
    v.setdefault("currency", "EUR")
    v["submitted_at"] = ctx.now_iso()
    return StepPlan(node_id="submit", next_node="decide")


def decide(run, ctx):
    v = run.vars
    return StepPlan(
        node_id="decide",
        effect=Effect(
            type=EffectType.ASK_USER,
            payload={
                "prompt": f"Approve expense '{v['title']}' for {v['amount']} {v['currency']}?",
                "choices": ["approve", "reject"],
                # Only the two choices are valid answers: resume refuses anything else.
                "allow_free_text": False,
                "wait_key": f"approval:{run.run_id}",
            },
            result_key="decision",  # the resume payload lands at vars["decision"]
        ),
        next_node="reason",
    )


def reason(run, ctx):
    verdict = run.vars["decision"]["response"]
    return StepPlan(
        node_id="reason",
        effect=Effect(
            type=EffectType.ASK_USER,
            payload={"prompt": f"Reason for '{verdict}' (free text, kept in the ledger)?"},
            result_key="reason",
        ),
        next_node="done",
    )


def done(run, ctx):
    v = run.vars
    return StepPlan(
        node_id="done",
        complete_output={
            "title": v["title"],
            "amount": v["amount"],
            "approved": v["decision"]["response"] == "approve",
            "reason": v["reason"].get("response"),
        },
    )


approval = WorkflowSpec(
    workflow_id="approval",
    entry_node="submit",
    nodes={"submit": submit, "decide": decide, "reason": reason, "done": done},
)
