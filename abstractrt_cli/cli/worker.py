"""``abstractrt worker``: ``tick --all`` again and again, waking when something can move."""

import json
from typing import Annotated, Any, List

import typer

from . import render
from .common import Call, MaxStepsOption, closed_pipe, command, result_exit


def moved_line(m: Any) -> str:
    """One run moved, for people: time, run, workflow, from -> to (and why it could move)."""
    before = m.before + (f" ({m.before_wait})" if m.before_wait else "")
    after = m.after + (f" ({m.after_wait})" if m.after_wait else "")
    line = f"{render.clock(m.at)}  {m.run_id}  {m.workflow_id}  {before} -> {after}  [{m.reason}]"
    if m.error:
        line += f": {render.compact(m.error, 160)}"
    return line


def start_line(w: Any) -> str:
    from ..ops.worker import describe_wakeups

    st = w.s.stores
    hooks = w.s.hook_runner
    named = [k for k in ("on_wait", "on_complete", "on_fail") if hooks and hooks.hooks.get(k)]
    hook_text = (", ".join(named) + f" (timeout {hooks.hooks['timeout']:g} s)") if named else "none"
    return (f"worker {w.worker_id[:8]} started: pid {w.pid} on {w.host}; store {st.kind} "
            f"{st.location}; workflows {w.s.settings.workflows_dir}; a round at least every "
            f"{w.interval:g} s (wake-ups: {describe_wakeups(st)}); max steps {w.max_steps}; "
            f"hooks: {hook_text}")


@command("worker")
def worker_cmd(
    call: Call,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.1, help="Most seconds between rounds when nothing wakes the worker.")] = 5.0,
    once: Annotated[bool, typer.Option(
        "--once", help="One round, then exit, with tick --all's summary and exit code.")] = False,
    max_steps: MaxStepsOption = 100,
) -> int:
    """Move every run that can move, round after round, until stopped (SIGTERM or Ctrl-C).

    Each round does what `tick --all` does; then it sleeps until the next due time, --interval, or a wake-up.

    One line per run it moves on stderr (--json: JSON Lines on stdout). Safe beside cron and other workers.

    Example: abstractrt worker --interval 5   |   one round, for cron: abstractrt worker --once
    """
    from ..ops import worker as ops

    closed: List[bool] = []
    switch = ops.StopSwitch()

    def on_moved(m: Any) -> None:
        if once or not call.json:
            render.err(moved_line(m))
            return
        try:
            stream = render.out()
            stream.write(json.dumps(m.to_jsonable(), ensure_ascii=False) + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            # Nobody reads our output any more: stop as after SIGTERM, then exit quietly.
            closed.append(True)
            switch.request("stdout closed")

    w = ops.Worker(call.session().settings, interval=interval, max_steps=max_steps,
                   on_moved=on_moved, switch=switch)
    restore = ops.install_stop_signals(switch, ops.write_stderr)
    try:
        if once:
            summary, _stopped = w.once()
            for line in summary.warnings:
                render.err(line)
            for e in summary.errors:
                render.err(f"error: {e}")
            if call.json:
                render.print_json(summary.to_jsonable())
            else:
                render.Printer().line(render.tick_summary(summary))
            return result_exit(errors=len(summary.errors), failed=summary.failed)
        render.err(start_line(w))
        try:
            w.run()
        except ops.StopRequested:
            w.stopped()
            render.err(f"worker {w.worker_id[:8]} stopped ({switch.reason}) after "
                       f"{render.plural(w.rounds, 'round')}, {render.plural(w.moved, 'run')} moved")
        if closed:
            closed_pipe()
        return 0
    finally:
        restore()
        w.close()
