"""Onboarding: a parent workflow that starts child workflows.

1. ``onboarding_account`` runs synchronously and completes at once;
2. ``onboarding_welcome`` runs synchronously and waits for a person (the manager's
   welcome note) — the parent waits too, and **resumes by itself** when the child is
   answered;
3. ``onboarding_swag`` is started asynchronously (``tick --all`` drives it).

Vars: ``name`` (default Ada).
"""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec


def begin(run, ctx):
    run.vars.setdefault("name", "Ada")
    return StepPlan(
        node_id="begin",
        effect=Effect(EffectType.START_SUBWORKFLOW,
                      {"workflow_id": "onboarding_account", "vars": {"name": run.vars["name"]}},
                      result_key="account"),
        next_node="welcome",
    )


def welcome(run, ctx):
    return StepPlan(
        node_id="welcome",
        effect=Effect(EffectType.START_SUBWORKFLOW,
                      {"workflow_id": "onboarding_welcome", "vars": {"name": run.vars["name"]}},
                      result_key="welcome"),
        next_node="swag",
    )


def swag(run, ctx):
    return StepPlan(
        node_id="swag",
        effect=Effect(EffectType.START_SUBWORKFLOW,
                      {"workflow_id": "onboarding_swag", "vars": {"name": run.vars["name"]},
                       "async": True},
                      result_key="swag"),
        next_node="finish",
    )


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
