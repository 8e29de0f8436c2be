"""Commands that move runs: start, tick, resume, cancel, limits."""

from typing import Annotated, List, Optional

import typer

from ..errors import UsageError
from . import render
from .common import (
    AnswerOption,
    Call,
    MaxStepsOption,
    OptionalRunArgument,
    PayloadFileOption,
    PayloadOption,
    RunArgument,
    SetOption,
    WorkflowArgument,
    command,
    result_exit,
)


def warn(lines: List[str]) -> None:
    for line in lines:
        render.err(line)


def out_run(call: Call, run, heading: Optional[str] = None) -> None:
    if call.json:
        render.print_json(run.to_jsonable())
    else:
        render.Printer().card(render.run_summary_card(run, heading=heading))


@command("start")
def start_cmd(
    call: Call,
    workflow: WorkflowArgument,
    vars_json: Annotated[Optional[str], typer.Option("--vars", help="Initial vars as a JSON object.",
                                                     show_default=False)] = None,
    vars_file: Annotated[Optional[str], typer.Option(
        "--vars-file", help="Initial vars from a JSON/YAML file, or - for stdin.", show_default=False)] = None,
    sets: SetOption = None,
    no_tick: Annotated[bool, typer.Option("--no-tick", help="Create the run without ticking it.")] = False,
    max_steps: MaxStepsOption = 100,
    answers: Annotated[Optional[str], typer.Option(
        "--answers", help="Answer prompts as they come from a scripted answers file.",
        show_default=False)] = None,
) -> int:
    """Create a run and tick it until it blocks or ends; show where it stands.

    Example: abstractrt start approval --set amount=120 --set title="New laptop"
    """
    from ..ops import answers as answer_ops
    from ..ops import runs as ops
    from ..payloads import build_vars

    initial = build_vars(vars_json=vars_json, vars_file=vars_file, sets=sets)
    rules = answer_ops.load_answer_rules(answers) if answers else None
    if rules is not None and no_tick:
        raise UsageError("--answers needs the run to be ticked; drop --no-tick")
    result = ops.start(call.session(), workflow, vars=initial, tick=not no_tick,
                       max_steps=max_steps, answers=rules)
    run = result.run
    report = result.answers
    if report is not None:
        if not call.json:
            for line in render.answer_report_lines(report):
                render.Printer().line(line)
        warn(report.warnings)
        warn([f"skipped: run {sk['run_id'][:8]}, prompt {sk['prompt']!r} (rule {sk['rule']}): "
              f"{sk['why']}" for sk in report.skipped])
        warn([f"error: {e}" for e in report.errors])
    if not call.json:
        render.err(f"started run {run.run_id}")
    out_run(call, run)
    warn(result.warnings)
    return result_exit(runs=[run], errors=len(report.errors) if report else 0)


@command("tick")
def tick_cmd(
    call: Call,
    run: OptionalRunArgument = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Tick every run that can move (for cron).")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q",
        help="With --all: print nothing when nothing moved. With RUN: print no card "
             "(the exit code tells; warnings and errors still go to stderr).")] = False,
    max_steps: MaxStepsOption = 100,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="With --all: list what would move and why; change nothing.")] = False,
) -> int:
    """Progress one run (or, with --all, every run that can move) until it blocks or ends.

    Example: abstractrt tick 1a2b3c4d    |   crontab: * * * * * abstractrt tick --all --quiet

    Rehearse: abstractrt tick --all --dry-run  (what would move, and why)
    """
    from ..ops import runs as ops

    if all_runs == (run is not None):
        raise UsageError("give a RUN or --all (not both)")
    if dry_run and not all_runs:
        raise UsageError("--dry-run goes with --all")
    s = call.session()
    if dry_run:
        moves, problems = ops.tick_all_plan(s)
        warn([f"error: {e}" for e in problems])
        if call.json:
            render.print_json([{"run_id": m.run_id, "reason": m.reason} for m in moves])
        elif moves:
            render.Printer().table(render.dry_run_table(moves))
        elif not quiet:
            render.Printer().line("tick --all --dry-run: nothing would move")
        return result_exit(errors=len(problems))
    if run is not None:
        outcome = ops.tick(s, run, max_steps=max_steps)
        if call.json or not quiet:
            out_run(call, outcome.run)
        warn(outcome.warnings)
        return result_exit(runs=[outcome.run])
    progress = None
    if not call.json and not quiet and not render.is_plain():
        progress = render.ProgressBar()
    try:
        summary = ops.tick_all(s, max_steps=max_steps, on_progress=progress)
    finally:
        if progress:
            progress.close()
    warn(summary.warnings)
    warn([f"error: {e}" for e in summary.errors])
    if call.json:
        render.print_json(summary.to_jsonable())
    elif summary.moved or not quiet:
        render.Printer().line(render.tick_summary(summary))
    return result_exit(errors=len(summary.errors), failed=summary.failed)


@command("resume")
def resume_cmd(
    call: Call,
    run: RunArgument,
    payload: PayloadOption = None,
    payload_file: PayloadFileOption = None,
    answer: AnswerOption = None,
    sets: SetOption = None,
    wait_key: Annotated[Optional[str], typer.Option(
        "--wait-key", help="Refuse unless the run waits on this key.", show_default=False)] = None,
    max_steps: MaxStepsOption = 100,
    artifact: Annotated[Optional[str], typer.Option(
        "--artifact", help="Store this file (or - for stdin) as an artifact; the payload gets "
                           "its ref, name, size and content type.", show_default=False)] = None,
    key: Annotated[Optional[str], typer.Option(
        "--key", help="The payload key of --artifact (default: artifact).",
        show_default=False)] = None,
) -> int:
    """Unblock a waiting run with a payload, then tick it until it blocks or ends.

    Example: abstractrt resume 1a2b3c4d --answer approve

    Also: --payload-file result.json, or from stdin: echo '{"ok": true}' | abstractrt resume 1a2b3c4d --payload-file -

    A file goes in by reference: abstractrt resume 1a2b3c4d --artifact scan.pdf --key document
    """
    from ..ops import runs as ops
    from ..payloads import build_payload

    if key is not None and artifact is None:
        raise UsageError("--key goes with --artifact PATH")
    if artifact == "-" and payload_file == "-":
        raise UsageError("--artifact - and --payload-file - cannot both read standard input")
    body = build_payload(payload=payload, payload_file=payload_file, answer=answer, sets=sets,
                         required=artifact is None)
    if artifact is not None:
        from ..ops import lifecycle

        body = lifecycle.attach_artifact(call.session(), run, body, artifact,
                                         key=key or lifecycle.DEFAULT_ARTIFACT_KEY,
                                         wait_key=wait_key)
    outcome = ops.resume(call.session(), run, body, wait_key=wait_key, max_steps=max_steps)
    out_run(call, outcome.run)
    warn(outcome.warnings)
    return result_exit(runs=[outcome.run])


@command("cancel")
def cancel_cmd(
    call: Call,
    run: RunArgument,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why (kept in the run and the ledger).",
                                                  show_default=False)] = None,
) -> int:
    """Cancel a running or waiting run and its unfinished children; terminal runs stay as they are.

    Example: abstractrt cancel 1a2b3c4d --reason "request withdrawn"
    """
    from ..ops import runs as ops

    result = ops.cancel(call.session(), run, reason=reason)
    warn(result.warnings)
    if result.cancelled_children:
        render.err(f"also cancelled {render.plural(len(result.cancelled_children), 'child run')}: "
                   + ", ".join(f"{c.run_id} ({c.workflow_id})" for c in result.cancelled_children))
    out_run(call, result.run)
    return result_exit()


@command("limits")
def limits_cmd(
    call: Call,
    run: RunArgument,
    sets: SetOption = None,
) -> int:
    """Show or change a run's limits (max_iterations, max_tokens, …).

    Example: abstractrt limits 1a2b3c4d --set max_iterations=50
    """
    from ..ops import runs as ops
    from ..payloads import parse_set_pairs

    updates = parse_set_pairs(sets or [])
    data, moved = ops.limits(call.session(), run, updates)
    if call.json:
        render.print_json(data)
        return result_exit()
    p = render.Printer()
    p.table(render.limits_table(data))
    p.line(render.limits_line(data["status"]))
    if moved is not None:  # the change resumed the run: show where it went
        p.card(render.run_summary_card(moved, heading="resumed"))
    return result_exit()
