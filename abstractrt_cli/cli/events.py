"""Events: emit (deliver and keep), events (list and prune the kept ones)."""

from typing import Annotated, Optional

import typer

from ..errors import UsageError
from . import render
from .common import (
    AnswerOption,
    Call,
    MaxStepsOption,
    PayloadFileOption,
    PayloadOption,
    SetOption,
    command,
    result_exit,
)


@command("emit")
def emit_cmd(
    call: Call,
    key: Annotated[str, typer.Argument(help="The wait key runs wait on.", show_default=False)],
    payload: PayloadOption = None,
    payload_file: PayloadFileOption = None,
    answer: AnswerOption = None,
    sets: SetOption = None,
    ttl: Annotated[Optional[str], typer.Option(
        "--ttl", help="Keep the event this long for runs that reach the wait later "
                      "(30s, 15m, 2h, 7d; default 7d).", show_default=False)] = None,
    no_keep: Annotated[bool, typer.Option(
        "--no-keep", help="Deliver to the runs waiting now and keep nothing.")] = False,
    max_steps: MaxStepsOption = 100,
) -> int:
    """Deliver an event: resume every run waiting on KEY, and keep the event.

    The event is kept (7 days by default, `--ttl`; `--no-keep` keeps nothing) for runs that
    reach `wait_event KEY` later.

    Example: abstractrt emit deploy:42:ci-green --set build=1234 --ttl 2h
    """
    from ..ops import events as ops
    from ..payloads import build_payload

    if no_keep and ttl is not None:
        raise UsageError("--ttl says how long to keep the event; --no-keep keeps nothing: give one")
    body = build_payload(payload=payload, payload_file=payload_file, answer=answer, sets=sets)
    result = ops.emit(call.session(), key, body, ttl=ttl, keep=not no_keep, max_steps=max_steps)
    for w in result.warnings:
        render.err(w)
    for rid in result.busy:
        if result.event is not None:
            # Not lost: the run takes the kept event when it is next ticked at its wait.
            render.err(f"note: run {rid} is busy in another process; it receives event "
                       f"{result.event.event_id} at its next tick (`abstractrt tick {rid}`)")
        else:
            render.err(f"error: run {rid} is busy in another process; not resumed, and "
                       "--no-keep kept nothing (try again later)")
    if call.json:
        render.print_json(result.to_jsonable())
    else:
        p = render.Printer()
        p.line(f"emitted {key!r} to {render.plural(len(result.runs), 'run')}")
        for r in result.runs:
            p.line(f"  {r.run_id}  {r.workflow_id}  {r.status.value}")
        if result.event is not None:
            p.line(f"kept as event {result.event.event_id} until "
                   f"{render.clock(result.event.expires_at)}")
        else:
            p.line("not kept (--no-keep)")
    return result_exit(runs=result.runs, busy=0 if result.event is not None else len(result.busy))


@command("events")
def events_cmd(
    call: Call,
    key: Annotated[Optional[str], typer.Option(
        "--key", help="Only keys matching this shell-style pattern (deploy:*).",
        show_default=False)] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Drop the expired events.")] = False,
) -> int:
    """List the kept events, or drop the expired ones with --prune.

    Each event: id, key, payload, when emitted, when it expires, which runs received it.

    Example: abstractrt events --key 'ci:web:*'    |   abstractrt events --prune
    """
    from ..ops import events as ops

    s = call.session()
    if prune:
        if key is not None:
            raise UsageError("--prune drops every expired event; it takes no --key")
        n = ops.prune_events(s)
        if call.json:
            render.print_json({"pruned": n})
        else:
            render.Printer().line(f"pruned {render.plural(n, 'expired event')}")
        return result_exit()
    kept = ops.list_events(s, key_pattern=key)
    if call.json:
        render.print_json([e.to_jsonable() for e in kept])
    elif kept:
        render.Printer().table(_events_table(kept, [ops.is_expired(e) for e in kept]))
    else:
        render.Printer().line(f"no {'matching ' if key else ''}kept events in {s.where()}")
    return result_exit()


def _events_table(kept: list, expired: list) -> "render.Table":
    t = render.Table(columns=["event", "key", "emitted", "expires", "received by", "payload"])
    for ev, gone in zip(kept, expired, strict=True):
        t.rows.append([ev.event_id, ev.key, render.clock(ev.emitted_at),
                       render.clock(ev.expires_at) + (" (expired)" if gone else ""),
                       ", ".join(render.short(r) for r in ev.received_by) or "-",
                       render.compact(ev.payload, 50)])
        t.styles.append("dim" if gone else None)
    return t
