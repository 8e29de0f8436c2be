"""Reminder: wait a relative time, then ask whether the task is done; snooze if not.

Vars: ``task`` (what to do), ``delay`` (e.g. ``30s``, ``15m``, ``2h``, or a number of
seconds; default 1h), ``max_snoozes`` (default 3). The timer is durable: nothing runs
while it waits, and the next ``abstractrt tick --all`` after the time carries on (put
that in cron).
"""

from datetime import datetime, timedelta, timezone

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec
from abstractrt_cli.core.timeutil import parse_duration


def schedule(run, ctx):
    v = run.vars
    v.setdefault("task", "water the plants")
    v.setdefault("delay", "1h")
    v.setdefault("snoozes", 0)
    now = datetime.fromisoformat(ctx.now_iso()).astimezone(timezone.utc)
    delay = v["delay"]
    # `--set delay=90` arrives as the number 90: take a bare number as seconds.
    if isinstance(delay, (int, float)) and not isinstance(delay, bool):
        wait = timedelta(seconds=delay)
    else:
        wait = parse_duration(str(delay))
    # Read the clock here and keep the absolute time in vars, rather than in `sleep`: the
    # sleep node stays a pure function of vars (same effect, same idempotency key when it
    # is replayed), and `abstractrt show` displays when the reminder is due.
    v["remind_at"] = (now + wait).isoformat()
    return StepPlan(node_id="schedule", next_node="sleep")


def sleep(run, ctx):
    return StepPlan(
        node_id="sleep",
        effect=Effect(EffectType.WAIT_UNTIL, {"until": run.vars["remind_at"]}, result_key="woke"),
        next_node="ask",
    )


def ask(run, ctx):
    return StepPlan(
        node_id="ask",
        effect=Effect(
            EffectType.ASK_USER,
            {"prompt": f"Reminder: {run.vars['task']}. Done?", "choices": ["done", "snooze"],
             "allow_free_text": False},
            result_key="answer",
        ),
        next_node="route",
    )


def route(run, ctx):
    v = run.vars
    if v["answer"]["response"] == "snooze" and v["snoozes"] < int(v.get("max_snoozes", 3)):
        v["snoozes"] += 1
        return StepPlan(node_id="route", next_node="schedule")
    return StepPlan(node_id="route", complete_output={
        "task": v["task"], "done": v["answer"]["response"] == "done", "snoozes": v["snoozes"]})


reminder = WorkflowSpec(
    workflow_id="reminder",
    entry_node="schedule",
    nodes={"schedule": schedule, "sleep": sleep, "ask": ask, "route": route},
)
