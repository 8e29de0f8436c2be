"""Expense approval with a deadline: the approvers have until the deadline, then it escalates.

Vars: ``title``, ``amount`` (a number), ``approvers`` (who may answer first; default
["manager"]), ``escalate_to`` (who may answer after the deadline; default ["director"]),
``timeout`` (default 2d) and ``escalation_timeout`` (default 1d): seconds, a duration
(90s, 15m, 4h, 2d) or an ISO-8601 time.

The answer is an object: ``decision`` (approve or reject) and an optional ``comment``.
No answer by the deadline goes on at ``escalate`` (``on_timeout: {"goto": ...}``); no
answer there either rejects the claim.
Try it:  ABSTRACTRT_ACTOR=manager abstractrt start expense_deadline --set title=Laptop --set amount=1450
         ABSTRACTRT_ACTOR=manager abstractrt answer
"""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec

DECISION = {
    "type": "object",
    "required": ["decision"],
    "properties": {
        "decision": {"enum": ["approve", "reject"], "description": "approve or reject the claim"},
        "comment": {"type": "string", "maxLength": 500, "default": ""},
    },
    "additionalProperties": False,
}


def submit(run, ctx):
    v = run.vars
    v.setdefault("title", "Team offsite catering")
    v.setdefault("amount", 250)
    v.setdefault("approvers", ["manager"])
    v.setdefault("escalate_to", ["director"])
    v.setdefault("timeout", "2d")
    v.setdefault("escalation_timeout", "1d")
    v["escalated"] = False
    return StepPlan(node_id="submit", next_node="review")


def review(run, ctx):
    v = run.vars
    return StepPlan(
        node_id="review",
        effect=Effect(
            type=EffectType.ASK_USER,
            payload={
                "prompt": f"Approve expense '{v['title']}' for {v['amount']} EUR?",
                "wait_key": f"expense:{run.run_id}",
                "schema": DECISION,
                "allowed_actors": v["approvers"],
                "timeout": v["timeout"],
                # Nobody answered in time: not a failure, someone else decides.
                "on_timeout": {"goto": "escalate"},
                "remind_every": "1d",
            },
            result_key="review",
        ),
        next_node="done",
    )


def escalate(run, ctx):
    v = run.vars
    v["escalated"] = True
    return StepPlan(
        node_id="escalate",
        effect=Effect(
            type=EffectType.ASK_USER,
            payload={
                "prompt": (f"Escalated (no answer from {', '.join(v['approvers'])} by the "
                           f"deadline): approve expense '{v['title']}' for {v['amount']} EUR?"),
                "wait_key": f"expense:{run.run_id}:escalated",
                "schema": DECISION,
                "allowed_actors": v["escalate_to"],
                "timeout": v["escalation_timeout"],
                "on_timeout": {"payload": {"decision": "reject",
                                           "comment": "no answer by the escalation deadline"}},
            },
            result_key="review",
        ),
        next_node="done",
    )


def done(run, ctx):
    v = run.vars
    review = v["review"]
    return StepPlan(
        node_id="done",
        complete_output={
            "title": v["title"],
            "amount": v["amount"],
            "approved": review.get("decision") == "approve",
            "comment": review.get("comment", ""),
            "escalated": v["escalated"],
        },
    )


expense_deadline = WorkflowSpec(
    workflow_id="expense_deadline",
    entry_node="submit",
    nodes={"submit": submit, "review": review, "escalate": escalate, "done": done},
)
