"""Onboarding: a parent workflow that starts child workflows.

1. ``onboarding_account`` runs synchronously and completes at once;
2. ``onboarding_welcome`` runs synchronously and waits for a person (the manager's
   welcome note) — the parent waits too, and **resumes by itself** when the child is
   answered;
3. ``onboarding_swag`` is started asynchronously (``tick --all`` drives it).

Vars: ``name`` (default Ada).
"""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec


def start_child(run, node_id, workflow_id, result_key, next_node, *, is_async=False):
    """A step that starts child workflow ``workflow_id`` for the new hire."""
    payload = {"workflow_id": workflow_id, "vars": {"name": run.vars["name"]}}
    if is_async:
        payload["async"] = True  # returns {"sub_run_id", "async": true} at once
    return StepPlan(
        node_id=node_id,
        effect=Effect(EffectType.START_SUBWORKFLOW, payload, result_key=result_key),
        next_node=next_node,
    )


def begin(run, ctx):
    run.vars.setdefault("name", "Ada")
    # Sync child that completes at once: its output is the result, no wait.
    return start_child(run, "begin", "onboarding_account", "account", "welcome")


def welcome(run, ctx):
    # Sync child that waits for a person: this run waits too, then resumes by itself.
    return start_child(run, "welcome", "onboarding_welcome", "welcome", "swag")


def swag(run, ctx):
    return start_child(run, "swag", "onboarding_swag", "swag", "finish", is_async=True)


def finish(run, ctx):
    v = run.vars
    return StepPlan(node_id="finish", complete_output={
        "name": v["name"],
        "login": v["account"]["output"]["login"],
        "welcome_note": v["welcome"]["output"]["note"],
        "swag_run": v["swag"]["sub_run_id"],
    })


onboarding = WorkflowSpec(
    workflow_id="onboarding", entry_node="begin",
    nodes={"begin": begin, "welcome": welcome, "swag": swag, "finish": finish},
)


def create_account(run, ctx):
    login = run.vars["name"].lower().replace(" ", ".")
    return StepPlan(node_id="create", complete_output={"login": login})


onboarding_account = WorkflowSpec(
    workflow_id="onboarding_account", entry_node="create", nodes={"create": create_account})


def ask_note(run, ctx):
    return StepPlan(
        node_id="ask_note",
        effect=Effect(EffectType.ASK_USER,
                      {"prompt": f"Write a welcome note for {run.vars['name']}"},
                      result_key="note"),
        next_node="done",
    )


def note_done(run, ctx):
    return StepPlan(node_id="done", complete_output={"note": run.vars["note"]["response"]})


onboarding_welcome = WorkflowSpec(
    workflow_id="onboarding_welcome", entry_node="ask_note",
    nodes={"ask_note": ask_note, "done": note_done})


def ship(run, ctx):
    return StepPlan(node_id="ship", complete_output={"shipped_to": run.vars["name"]})


onboarding_swag = WorkflowSpec(
    workflow_id="onboarding_swag", entry_node="ship", nodes={"ship": ship})
