"""Flaky effect: ``fetch_quote`` fails twice, then succeeds, under a ``RetryPolicy``.

Each attempt is a ledger record with its attempt number (see ``abstractrt ledger RUN``).
The backoff here is short, so the retries happen inside the tick; a backoff longer than
a few seconds would instead checkpoint the run as waiting (reason ``until``) and a later
tick would retry, never blocking the process.

Vars: ``fail_times`` (default 2).
"""

from abstractrt_cli import Effect, RetryPolicy, StepPlan, WorkflowSpec

_attempts = {}  # per (run, step): how often fetch_quote was tried in this process


def fetch_quote(run, effect):
    key = (run.run_id, run.effect_seq)
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] <= int(run.vars.get("fail_times", 2)):
        raise ConnectionError(f"quote service unavailable (attempt {_attempts[key]})")
    return {"symbol": effect.payload["symbol"], "price": 42.0, "attempts": _attempts[key]}


EFFECT_HANDLERS = {"fetch_quote": fetch_quote}
EFFECT_POLICY = RetryPolicy(effect_max_attempts={"fetch_quote": 3}, backoff_base=0.05,
                            backoff_max=0.5)


def fetch(run, ctx):
    return StepPlan(
        node_id="fetch",
        # A custom effect type: run by this module's EFFECT_HANDLERS entry.
        effect=Effect("fetch_quote", {"symbol": run.vars.get("symbol", "ACME")},
                      result_key="quote"),
        next_node="done",
    )


def done(run, ctx):
    return StepPlan(node_id="done", complete_output=run.vars["quote"])


flaky = WorkflowSpec(workflow_id="flaky", entry_node="fetch", nodes={"fetch": fetch, "done": done})
