"""Answering people's prompts: answer (interactively, or from a rules file)."""

import json
import sys
from typing import Annotated, Any, Callable, Optional

import typer

from ..core.models import RunState
from ..errors import UsageError
from . import render
from .common import Call, MaxStepsOption, OptionalRunArgument, command, complete_runs, result_exit


@command("answer")
def answer_cmd(
    call: Call,
    run: OptionalRunArgument = None,
    script: Annotated[Optional[str], typer.Option(
        "--script", help="Answer from a scripted answers file (YAML/JSON rules).", show_default=False)] = None,
    run_opt: Annotated[Optional[str], typer.Option(
        "--run", help="With --script: only this run (and its children).", show_default=False,
        autocompletion=complete_runs)] = None,
    max_steps: MaxStepsOption = 100,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="With --script: print what each rule would answer now; change nothing.")] = False,
) -> int:
    """Answer waiting prompts: interactively in a terminal, or from a rules file with --script.

    Example: abstractrt answer    |   abstractrt answer --script answers.yaml --run 1a2b3c4d

    Rehearse: abstractrt answer --script answers.yaml --dry-run  (run, prompt, rule, answer)
    """
    from ..ops import answers as ops

    if run is not None and run_opt is not None and run != run_opt:
        raise UsageError("give the run once (RUN or --run)")
    target = run or run_opt
    if dry_run and script is None:
        raise UsageError("--dry-run goes with --script FILE")
    if script is not None:
        rules = ops.load_answer_rules(script)  # malformed → refused before anything is answered
        if dry_run:
            return _rehearse(call, ops.rehearse(call.session(), rules, run_ref=target))
        report = ops.answer_script(call.session(), rules, run_ref=target, max_steps=max_steps)
        for w in report.warnings:
            render.err(w)
        if call.json:
            render.print_json(report.to_jsonable())
        else:
            p = render.Printer()
            for line in render.answer_report_lines(report):
                p.line(line)
        for sk in report.skipped:
            render.err(f"skipped: run {sk['run_id'][:8]}, prompt {sk['prompt']!r} (rule "
                       f"{sk['rule']}): {sk['why']}")
        for e in report.errors:
            render.err(f"error: {e}")
        return result_exit(errors=len(report.errors), failed=len(report.failed_runs))
    if call.json:
        raise UsageError("interactive answering has no --json form; use --script FILE")
    if not (sys.stdin.isatty() and render.out().isatty()):
        raise UsageError("`abstractrt answer` needs a terminal; use `abstractrt answer --script FILE` "
                         "or `abstractrt resume RUN --answer TEXT`")
    p = render.Printer()
    walked = ops.answer_interactively(call.session(), _terminal_asker(p),
                                      ask_field=_terminal_field_asker(p), run_ref=target,
                                      max_steps=max_steps, on_notice=render.err)
    for o in walked.outcomes:
        for w in o.warnings:
            render.err(w)
    if walked.ended_by_eof:
        p.line("")  # Ctrl-D left the cursor on the prompt line
    for line in render.interactive_summary_lines(walked):
        p.line(line)
    return result_exit(runs=[o.run for o in walked.outcomes])


def _terminal_asker(p: "render.Printer") -> Callable[[RunState, Optional[str]], Optional[str]]:
    """Ask at the terminal: the card, then the prompt; empty skips, Ctrl-D ends (EOFError)."""

    def ask(run: RunState, error: Optional[str]) -> Optional[str]:
        if error:
            p.line(f"✗ {error}", style="red")
        else:
            p.card(render.waiting_card(run))
        w = run.waiting
        hint = "number or text" if w and w.choices else "text"
        render.flush()
        with render.real_stdout():
            text = input(f"answer ({hint}; empty to skip; Ctrl-D to stop)> ")
        return text if text.strip() else None

    return ask


def _terminal_field_asker(p: "render.Printer") -> Callable[[RunState, Any, Optional[str]], str]:
    """Ask one field of a form: the card before the first, a menu for an enum, the
    default offered; what an empty answer does is said in the prompt."""

    def ask_field(run: RunState, f: Any, error: Optional[str]) -> str:
        if error:
            p.line(f"✗ {error}", style="red")
        elif f.index == 0:
            p.card(render.waiting_card(run))
        if f.enum is not None and not error:
            for i, value in enumerate(f.enum, 1):
                p.line(f"  {i}) {value if isinstance(value, str) else json.dumps(value)}")
        if f.has_default:
            empty = f"empty: {f.default if isinstance(f.default, str) else json.dumps(f.default)}"
        elif f.required:
            empty = "empty skips this prompt"
        else:
            empty = "empty leaves it out"
        about = f" — {f.description}" if f.description and not error else ""
        if about:
            p.line(f"{f.name}{about}")
        render.flush()
        with render.real_stdout():
            return input(f"{f.name} ({f.kind()}; {empty}; Ctrl-D to stop)> ")

    return ask_field


def _rehearse(call: Call, plan: Any) -> int:
    """``answer --script FILE --dry-run``: what each rule would answer now."""
    if call.json:
        render.print_json(plan.answers)
    else:
        p = render.Printer()
        p.line(f"would answer {render.plural(len(plan.answers), 'prompt')} (nothing changed)")
        for a in plan.answers:
            p.line(f"  {a['run_id'][:8]}  {render.compact(a['prompt'], 50)}  → "
                   f"{render.compact(a['payload'], 40)}  by {plan.rules[a['rule']]}")
        if plan.unmatched:
            p.line(f"{render.plural(len(plan.unmatched), 'prompt')} no rule matches")
            for u in plan.unmatched:
                p.line(f"  {u['run_id'][:8]}  {render.compact(u['prompt'], 60)}")
    for sk in plan.skipped:
        render.err(f"would skip: run {sk['run_id'][:8]}, prompt {sk['prompt']!r} (rule "
                   f"{sk['rule']}): {sk['why']}")
    for e in plan.refused:
        render.err(f"error: would be refused: {e}")
    return result_exit(errors=len(plan.refused))
