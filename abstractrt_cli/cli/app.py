"""The ``abstractrt`` command: thin Typer commands over ``abstractrt_cli.ops``.

Each command parses its arguments, calls one function in ``ops`` and renders what comes
back. Errors become one line on stderr and their exit code in ``_fail``; nothing else
here decides anything.
"""

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional

import typer


from .. import ops
from ..core.models import RunState, RunStatus, WaitReason
from ..errors import AbstractRTError, UsageError
from . import render

EXIT_FAILED_RUN = 3

app = typer.Typer(
    name="abstractrt",
    help="Durable workflow runner: start, tick, resume and answer checkpointed workflow runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Options shared by every command (also accepted before the command name).
JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
DataDirOption = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Where runs and ledgers live (env: ABSTRACTRT_DATA_DIR).",
    show_default=False)]
WorkflowsOption = Annotated[Optional[Path], typer.Option(
    "--workflows", help="The workflows directory (env: ABSTRACTRT_WORKFLOWS; default: ./workflows).",
    show_default=False)]
MaxStepsOption = Annotated[int, typer.Option("--max-steps", min=1, help="Most node steps per tick.")]
SetOption = Annotated[Optional[List[str]], typer.Option(
    "--set", help="KEY=VALUE (repeatable; VALUE parsed as JSON when it is JSON).", show_default=False)]
PayloadOption = Annotated[Optional[str], typer.Option("--payload", help="Payload as inline JSON.",
                                                      show_default=False)]
PayloadFileOption = Annotated[Optional[str], typer.Option(
    "--payload-file", help="Payload from a JSON or YAML file, or - for standard input.",
    show_default=False)]
AnswerOption = Annotated[Optional[str], typer.Option(
    "--answer", help='Shorthand for the payload {"response": TEXT}.', show_default=False)]


class _Globals:
    data_dir: Optional[Path] = None
    workflows: Optional[Path] = None
    json: bool = False
    debug: bool = False


G = _Globals()


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        sys.stdout.write(f"abstractrt {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _main(
    data_dir: DataDirOption = None,
    workflows: WorkflowsOption = None,
    json_out: JsonOption = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Durable workflow runner: start, tick, resume and answer checkpointed workflow runs.

    Example: abstractrt start approval --set amount=120
    """
    G.data_dir, G.workflows, G.json = data_dir, workflows, json_out


def _session(data_dir: Optional[Path], workflows: Optional[Path]) -> ops.Session:
    from ..settings import resolve

    return ops.Session(resolve(data_dir or G.data_dir, workflows or G.workflows))


def command(*names: str, **kwargs: Any) -> Callable:
    """Register a command whose AbstractRTErrors become one stderr line and an exit code."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            as_json = bool(kw.get("json_out")) or G.json
            try:
                with render.json_output() if as_json else contextlib.nullcontext():
                    return fn(*args, **kw)
            except AbstractRTError as exc:
                _fail(exc.message, exc.exit_code, exc.hint, as_json)
            except (typer.Exit, typer.Abort, SystemExit):
                raise
            except KeyboardInterrupt:
                render.err("interrupted")
                raise typer.Exit(130) from None
            except Exception as exc:  # a bug: say so plainly; traceback only when asked
                if os.environ.get("ABSTRACTRT_DEBUG"):
                    raise
                _fail(f"internal error: {type(exc).__name__}: {exc} "
                      "(set ABSTRACTRT_DEBUG=1 for a traceback)", 1, None, as_json)

        app.command(*names, **kwargs)(wrapper)
        return wrapper

    return deco


def _fail(message: str, code: int, hint: Optional[str], as_json: bool) -> None:
    line = f"error: {message}" + (f" ({hint})" if hint else "")
    render.err(line)
    if as_json:
        render.print_json({"error": {"code": code, "message": message}})
    raise typer.Exit(code)


def _warn(lines: List[str]) -> None:
    for w in lines:
        render.err(w)


def _exit_for(runs: List[RunState]) -> None:
    if any(r.status == RunStatus.FAILED for r in runs):
        raise typer.Exit(EXIT_FAILED_RUN)


def _out_run(run: RunState, as_json: bool, heading: Optional[str] = None) -> None:
    if as_json:
        render.print_json(run.to_jsonable())
    else:
        render.Printer().card(render.run_summary_card(run, heading=heading))


# ---------------------------------------------------------------------------- commands


@command("workflows")
def workflows_cmd(
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """List workflows: id, entry node, nodes, source file, description; broken files too.

    Example: abstractrt workflows --workflows ./workflows
    """
    s = _session(data_dir, workflows)
    items = ops.list_workflows(s)
    if json_out or G.json:
        render.print_json(items)
    else:
        p = render.Printer()
        if items:
            p.table(render.workflows_table(items))
        else:
            p.line(f"no workflows in {s.settings.workflows_dir}")
    if not s.settings.workflows_dir.is_dir():
        render.err(f"warning: workflows directory {s.settings.workflows_dir} does not exist "
                   "(use --workflows DIR, ABSTRACTRT_WORKFLOWS, or workflows_dir in config.yaml)")
    for it in items:
        if it.get("error"):
            render.err(f"error: {it['source']}: {it['error']}")
    if any(it.get("error") for it in items):
        raise typer.Exit(1)


@command("start")
def start_cmd(
    workflow: Annotated[str, typer.Argument(help="The workflow id.", show_default=False)],
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
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Create a run and tick it until it blocks or ends; show where it stands.

    Example: abstractrt start approval --set amount=120 --set title="New laptop"
    """
    from ..payloads import build_vars

    as_json = json_out or G.json
    initial = build_vars(vars_json=vars_json, vars_file=vars_file, sets=sets)
    rules = ops.load_answer_rules(answers) if answers else None
    if rules is not None and no_tick:
        raise UsageError("--answers needs the run to be ticked; drop --no-tick")
    s = _session(data_dir, workflows)
    result = ops.start(s, workflow, vars=initial, tick=not no_tick, max_steps=max_steps,
                       answers=rules)
    run = result.run
    if result.answers is not None and not as_json:
        _print_answer_report(result.answers)
    if result.answers is not None:
        _warn(result.answers.warnings)
        for e in result.answers.errors:
            render.err(f"error: {e}")
    if not as_json:
        render.err(f"started run {run.run_id}")
    _out_run(run, as_json, heading=None)
    _exit_for([run])
    if result.answers is not None and result.answers.errors:
        raise typer.Exit(1)


@command("tick")
def tick_cmd(
    run: Annotated[Optional[str], typer.Argument(help="Run id or unique prefix (6+ chars).",
                                                 show_default=False)] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Tick every run that can move (for cron).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="With --all: print nothing when nothing moved.")] = False,
    max_steps: MaxStepsOption = 100,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Progress one run (or, with --all, every run that can move) until it blocks or ends.

    Example: abstractrt tick 1a2b3c4d    |   crontab: * * * * * abstractrt tick --all --quiet
    """
    as_json = json_out or G.json
    if all_runs == (run is not None):
        raise UsageError("give a RUN or --all (not both)")
    s = _session(data_dir, workflows)
    if run is not None:
        outcome = ops.tick(s, run, max_steps=max_steps)
        _warn(outcome.warnings)
        _out_run(outcome.run, as_json)
        _exit_for([outcome.run])
        return
    progress = None
    if not as_json and not quiet and not render.is_plain():
        progress = _ProgressBar()
    try:
        summary = ops.tick_all(s, max_steps=max_steps, on_progress=progress)
    finally:
        if progress:
            progress.close()
    _warn(summary.warnings)
    for e in summary.errors:
        render.err(f"error: {e}")
    if as_json:
        render.print_json(summary.to_jsonable())
    elif summary.moved or not quiet:
        render.Printer().line(
            f"tick --all: {summary.moved} moved ({summary.completed} completed, "
            f"{summary.waiting} waiting, {summary.failed} failed, {summary.running} still running), "
            f"{summary.skipped_busy} skipped busy")
    if summary.errors:
        raise typer.Exit(1)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED_RUN)


class _ProgressBar:
    """A rich progress bar shown only in a terminal and only when there is much to do."""

    THRESHOLD = 20

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total < self.THRESHOLD:
            return
        if self._progress is None:
            from rich.progress import Progress

            self._progress = Progress(transient=True)
            self._progress.start()
            self._task = self._progress.add_task("ticking runs", total=total)
        self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@command("resume")
def resume_cmd(
    run: Annotated[str, typer.Argument(help="Run id or unique prefix (6+ chars).", show_default=False)],
    payload: PayloadOption = None,
    payload_file: PayloadFileOption = None,
    answer: AnswerOption = None,
    sets: SetOption = None,
    wait_key: Annotated[Optional[str], typer.Option(
        "--wait-key", help="Refuse unless the run waits on this key.", show_default=False)] = None,
    max_steps: MaxStepsOption = 100,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Unblock a waiting run with a payload, then tick it until it blocks or ends.

    Example: abstractrt resume 1a2b3c4d --answer approve

    Also: --payload-file result.json, or from stdin: echo '{"ok": true}' | abstractrt resume 1a2b3c4d --payload-file -
    """
    from ..payloads import build_payload

    as_json = json_out or G.json
    body = build_payload(payload=payload, payload_file=payload_file, answer=answer, sets=sets)
    s = _session(data_dir, workflows)
    outcome = ops.resume(s, run, body, wait_key=wait_key, max_steps=max_steps)
    _warn(outcome.warnings)
    _out_run(outcome.run, as_json)
    _exit_for([outcome.run])


@command("emit")
def emit_cmd(
    key: Annotated[str, typer.Argument(help="The wait key runs wait on.", show_default=False)],
    payload: PayloadOption = None,
    payload_file: PayloadFileOption = None,
    answer: AnswerOption = None,
    sets: SetOption = None,
    max_steps: MaxStepsOption = 100,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Deliver an event: resume every run waiting on wait key KEY.

    Example: abstractrt emit deploy:42:ci-green --set build=1234
    """
    from ..payloads import build_payload

    as_json = json_out or G.json
    body = build_payload(payload=payload, payload_file=payload_file, answer=answer, sets=sets)
    s = _session(data_dir, workflows)
    result = ops.emit(s, key, body, max_steps=max_steps)
    _warn(result.warnings)
    for rid in result.busy:
        render.err(f"error: run {rid} is busy in another process; not resumed (try again later)")
    if as_json:
        render.print_json([r.to_jsonable() for r in result.runs])
    else:
        p = render.Printer()
        p.line(f"emitted {key!r} to {len(result.runs)} run(s)")
        for r in result.runs:
            p.line(f"  {r.run_id}  {r.workflow_id}  {r.status.value}")
    _exit_for(result.runs)
    if result.busy:
        raise typer.Exit(4)


@command("waiting")
def waiting_cmd(
    workflow: Annotated[Optional[str], typer.Option("--workflow", help="Only this workflow.",
                                                    show_default=False)] = None,
    reason: Annotated[Optional[WaitReason], typer.Option(
        "--reason", help="Only this wait reason.", case_sensitive=False, show_default=False)] = None,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Show every waiting run: prompt, choices, wait key, since when, and how to answer it.

    Example: abstractrt waiting --reason user
    """
    s = _session(data_dir, workflows)
    runs = ops.waiting(s, workflow_id=workflow, reason=reason)
    if json_out or G.json:
        render.print_json([r.to_jsonable() for r in runs])
        return
    p = render.Printer()
    if not runs:
        p.line("no waiting runs")
        return
    for r in runs:
        p.card(render.waiting_card(r))


@command("runs")
def runs_cmd(
    status: Annotated[Optional[RunStatus], typer.Option("--status", case_sensitive=False,
                                                        help="Only runs with this status.",
                                                        show_default=False)] = None,
    workflow: Annotated[Optional[str], typer.Option("--workflow", help="Only this workflow.",
                                                    show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 50,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Table of runs, newest first.

    Example: abstractrt runs --status waiting --limit 20
    """
    s = _session(data_dir, workflows)
    listing = ops.list_runs(s, status=status, workflow_id=workflow, limit=limit)
    if json_out or G.json:
        items = [r.to_jsonable() for r in listing.runs] + [
            {"run_id": None, "status": "corrupt", "path": c.path, "error": c.message}
            for c in listing.corrupt]
        render.print_json(items)
    else:
        p = render.Printer()
        if listing.runs or listing.corrupt:
            p.table(render.runs_table(listing.runs, listing.corrupt))
        else:
            p.line("no runs")
    for c in listing.corrupt:
        render.err(f"error: {c.message}")
    if listing.corrupt:
        raise typer.Exit(1)


@command("show")
def show_cmd(
    run: Annotated[str, typer.Argument(help="Run id or unique prefix (6+ chars).", show_default=False)],
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """One run: status, node, vars, waiting, output, error, parent and children, limits.

    Example: abstractrt show 1a2b3c4d
    """
    s = _session(data_dir, workflows)
    data = ops.show(s, run)
    if json_out or G.json:
        out = data["run"].to_jsonable()
        out["children"] = [{"run_id": c.run_id, "workflow_id": c.workflow_id,
                            "status": c.status.value} for c in data["children"]]
        out["limit_status"] = data["limits"]
        render.print_json(out)
    else:
        render.Printer().card(render.show_card(data))


@command("ledger")
def ledger_cmd(
    run: Annotated[str, typer.Argument(help="Run id or unique prefix (6+ chars).", show_default=False)],
    verify: Annotated[bool, typer.Option(
        "--verify", help="Check the hash chain; fail naming the first bad record.")] = False,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """The run's history as a timeline; --json gives the raw records, --verify checks them.

    Example: abstractrt ledger 1a2b3c4d --verify
    """
    as_json = json_out or G.json
    s = _session(data_dir, workflows)
    if verify:
        report = ops.verify(s, run)
        if as_json:
            render.print_json(report)
        elif report["ok"]:
            render.Printer().line(f"ledger of run {report['run_id']} verified: {report['message']}")
        if not report["ok"]:
            render.err(f"error: ledger of run {report['run_id']} failed verification: {report['message']}")
            raise typer.Exit(1)
        return
    data = ops.ledger(s, run)
    if as_json:
        render.print_json(data["records"])
        return
    p = render.Printer()
    r = data["run"]
    p.line(f"ledger of run {r.run_id} ({r.workflow_id}, {r.status.value}): "
           f"{len(data['records'])} records", style="bold")
    p.table(render.ledger_table(data["records"]))


@command("cancel")
def cancel_cmd(
    run: Annotated[str, typer.Argument(help="Run id or unique prefix (6+ chars).", show_default=False)],
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why (kept in the run and the ledger).",
                                                  show_default=False)] = None,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Cancel a running or waiting run and its unfinished children; terminal runs stay as they are.

    Example: abstractrt cancel 1a2b3c4d --reason "request withdrawn"
    """
    s = _session(data_dir, workflows)
    outcome = ops.cancel(s, run, reason=reason)
    _warn(outcome.warnings)
    _out_run(outcome.run, json_out or G.json)


@command("limits")
def limits_cmd(
    run: Annotated[str, typer.Argument(help="Run id or unique prefix (6+ chars).", show_default=False)],
    sets: SetOption = None,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Show or change a run's limits (max_iterations, max_tokens, …).

    Example: abstractrt limits 1a2b3c4d --set max_iterations=50
    """
    from ..payloads import parse_set_pairs

    updates = parse_set_pairs(sets or [])
    s = _session(data_dir, workflows)
    data = ops.limits(s, run, updates)
    if json_out or G.json:
        render.print_json(data)
        return
    t = render.Table(columns=["limit", "value"], title=f"limits of run {data['run_id']}")
    for k, v in sorted(data["limits"].items()):
        t.rows.append([k, "null" if v is None else str(v)])
    p = render.Printer()
    p.table(t)
    st = data["status"]
    p.line(f"iterations {st['iterations']['current']}/{st['iterations']['max']} "
           f"({st['iterations']['pct']}%), tokens {st['tokens']['estimated_used']}/"
           f"{st['tokens']['max']} ({st['tokens']['pct']}%)")


@command("reindex")
def reindex_cmd(
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Rebuild the query index from the run files (after restoring runs from a backup).

    Example: abstractrt reindex
    """
    s = _session(data_dir, workflows)
    counts = ops.reindex(s)
    if json_out or G.json:
        render.print_json(counts)
        return
    render.Printer().line(f"reindexed {counts.get('runs', 0)} run(s) in "
                          f"{counts.get('seconds', 0):.2f}s; {counts.get('corrupt', 0)} corrupt, "
                          f"{counts.get('removed', 0)} stale entries removed")
    if counts.get("corrupt"):
        raise typer.Exit(1)


@command("answer")
def answer_cmd(
    run: Annotated[Optional[str], typer.Argument(help="Only this run (and its children).",
                                                 show_default=False)] = None,
    script: Annotated[Optional[str], typer.Option(
        "--script", help="Answer from a scripted answers file (YAML/JSON rules).", show_default=False)] = None,
    run_opt: Annotated[Optional[str], typer.Option("--run", help="With --script: only this run (and its children).",
                                                   show_default=False)] = None,
    max_steps: MaxStepsOption = 100,
    json_out: JsonOption = False, data_dir: DataDirOption = None, workflows: WorkflowsOption = None,
) -> None:
    """Answer waiting prompts: interactively in a terminal, or from a rules file with --script.

    Example: abstractrt answer    |   abstractrt answer --script answers.yaml --run 1a2b3c4d
    """
    as_json = json_out or G.json
    if run is not None and run_opt is not None and run != run_opt:
        raise UsageError("give the run once (RUN or --run)")
    target = run or run_opt
    if script is not None:
        rules = ops.load_answer_rules(script)  # malformed → refused before anything is answered
        s = _session(data_dir, workflows)
        scope = s.load_run(target).run_id if target else None
        report = ops.answer_with_rules(s, rules, scope_run_id=scope, max_steps=max_steps)
        _warn(report.warnings)
        if as_json:
            render.print_json(report.to_jsonable())
        else:
            _print_answer_report(report)
        for e in report.errors:
            render.err(f"error: {e}")
        if report.errors:
            raise typer.Exit(1)
        if report.failed_runs:
            raise typer.Exit(EXIT_FAILED_RUN)
        return
    if as_json:
        raise UsageError("interactive answering has no --json form; use --script FILE")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("`abstractrt answer` needs a terminal; use `abstractrt answer --script FILE` "
                         "or `abstractrt resume RUN --answer TEXT`")
    s = _session(data_dir, workflows)
    scope = s.load_run(target).run_id if target else None
    p = render.Printer()
    outcomes = ops.answer_interactively(s, _terminal_asker(p), scope_run_id=scope,
                                        max_steps=max_steps, on_notice=render.err)
    for o in outcomes:
        _warn(o.warnings)
    p.line(f"answered {len(outcomes)} prompt(s)")
    for o in outcomes:
        p.line(f"  {o.run.run_id}  {o.run.workflow_id}  {o.run.status.value}")
    _exit_for([o.run for o in outcomes])


def _terminal_asker(p: "render.Printer") -> Callable[[RunState, Optional[str]], Optional[str]]:
    def ask(run: RunState, error: Optional[str]) -> Optional[str]:
        if error:
            p.line(f"✗ {error}", style="red")
        else:
            p.card(render.waiting_card(run))
        w = run.waiting
        hint = "number or text" if w and w.choices else "text"
        try:
            text = input(f"answer ({hint}; empty to skip)> ")
        except EOFError:
            return None
        return text if text.strip() else None

    return ask


def _print_answer_report(report: "ops.AnswerReport") -> None:
    p = render.Printer()
    p.line(f"answered {len(report.answered)} prompt(s)")
    for a in report.answered:
        p.line(f"  {a['run_id'][:8]}  {render.compact(a['prompt'], 50)!s}  → "
               f"{render.compact(a['payload'], 40)}  (rule {a['rule']}; run {a['status']})")
    if report.unmatched:
        p.line(f"{len(report.unmatched)} prompt(s) left unanswered (no rule matched)")
        for u in report.unmatched:
            p.line(f"  {u['run_id'][:8]}  {render.compact(u['prompt'], 60)}")


def main() -> None:
    """Console-script entry point."""
    app()
