"""Delivering events: emit."""

from typing import Annotated

import typer

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
    max_steps: MaxStepsOption = 100,
) -> int:
    """Deliver an event: resume every run waiting on wait key KEY.

    Example: abstractrt emit deploy:42:ci-green --set build=1234
    """
    from ..ops import events as ops
    from ..payloads import build_payload

    body = build_payload(payload=payload, payload_file=payload_file, answer=answer, sets=sets)
    result = ops.emit(call.session(), key, body, max_steps=max_steps)
    for w in result.warnings:
        render.err(w)
    for rid in result.busy:
        render.err(f"error: run {rid} is busy in another process; not resumed (try again later)")
    if call.json:
        render.print_json([r.to_jsonable() for r in result.runs])
    else:
        p = render.Printer()
        p.line(f"emitted {key!r} to {render.plural(len(result.runs), 'run')}")
        for r in result.runs:
            p.line(f"  {r.run_id}  {r.workflow_id}  {r.status.value}")
    return result_exit(runs=result.runs, busy=len(result.busy))
