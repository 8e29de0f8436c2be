"""Commands that only read: workflows, waiting, runs, show, ledger."""

from typing import Annotated, Optional

import typer

from ..core.models import RunStatus, WaitReason
from . import render
from .common import Call, RunArgument, command, complete_runs, result_exit


@command("workflows")
def workflows_cmd(call: Call) -> int:
    """List workflows: id, entry node, nodes, source file, description; broken files too.

    Example: abstractrt workflows --workflows ./workflows
    """
    from ..ops import queries as ops

    s = call.session()
    items = ops.list_workflows(s)
    where = s.settings.workflows_dir
    if call.json:
        render.print_json(items)
    else:
        p = render.Printer()
        if items:
            p.table(render.workflows_table(items))
        else:
            p.line(f"no workflows in {where}")
    if not where.is_dir():
        render.err(f"warning: workflows directory {where} does not exist "
                   "(use --workflows DIR, ABSTRACTRT_WORKFLOWS, or workflows_dir in config.yaml)")
    broken = [it for it in items if it.get("error")]
    for it in broken:
        render.err(f"error: {it['source']}: {it['error']}")
    return result_exit(errors=len(broken))


@command("waiting")
def waiting_cmd(
    call: Call,
    workflow: Annotated[Optional[str], typer.Option("--workflow", help="Only this workflow.",
                                                    show_default=False)] = None,
    reason: Annotated[Optional[WaitReason], typer.Option(
        "--reason", help="Only this wait reason.", case_sensitive=False, show_default=False)] = None,
) -> int:
    """Show every waiting run: prompt, choices, wait key, since when, and how to answer it.

    Example: abstractrt waiting --reason user
    """
    from ..ops import queries as ops

    s = call.session()
    runs = ops.waiting(s, workflow_id=workflow, reason=reason)
    if call.json:
        render.print_json([r.to_jsonable() for r in runs])
        return result_exit()
    p = render.Printer()
    if not runs:
        p.line(f"no waiting runs in {s.where()}")
    for r in runs:
        p.card(render.waiting_card(r))
    return result_exit()


@command("runs")
def runs_cmd(
    call: Call,
    status: Annotated[Optional[RunStatus], typer.Option("--status", case_sensitive=False,
                                                        help="Only runs with this status.",
                                                        show_default=False)] = None,
    workflow: Annotated[Optional[str], typer.Option("--workflow", help="Only this workflow.",
                                                    show_default=False)] = None,
    since: Annotated[Optional[str], typer.Option(
        "--since", help="Only runs created within this long (30s, 15m, 2h, 7d).",
        show_default=False)] = None,
    parent: Annotated[Optional[str], typer.Option(
        "--parent", help="Only the children of this run (id or prefix).", show_default=False,
        autocompletion=complete_runs)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")] = 50,
) -> int:
    """Table of runs, newest first (corrupt run files are listed too, and make it exit 1).

    Example: abstractrt runs --status waiting --since 2h --limit 20
    """
    from ..ops import queries as ops

    listing = ops.list_runs(call.session(), status=status, workflow_id=workflow, limit=limit,
                            since=since, parent=parent)
    if call.json:
        render.print_json([r.to_jsonable() for r in listing.runs]
                          + [render.corrupt_row(c) for c in listing.corrupt])
    elif listing.runs or listing.corrupt:
        render.Printer().table(render.runs_table(listing.runs, listing.corrupt))
    else:
        filtered = any(v is not None for v in (status, workflow, since, parent))
        render.Printer().line(f"no {'matching ' if filtered else ''}runs in {listing.where}")
    for c in listing.corrupt:
        render.err(f"error: {c.message}")
    return result_exit(errors=len(listing.corrupt))


@command("show")
def show_cmd(call: Call, run: RunArgument) -> int:
    """One run: status, node, vars, waiting, output, error and traceback, parent and children, limits.

    Example: abstractrt show 1a2b3c4d
    """
    from ..ops import queries as ops

    data = ops.show(call.session(), run)
    if call.json:
        render.print_json(render.show_json(data))
    else:
        render.Printer().card(render.show_card(data))
    return result_exit()


@command("ledger")
def ledger_cmd(
    call: Call,
    run: RunArgument,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Check the hash chain; fail naming the first bad record.")] = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print records as they arrive until the run ends (JSON Lines "
                               "with --json; exit 3 if it failed).")] = False,
) -> int:
    """The run's history as a timeline; --json gives the raw records, --verify checks them.

    Example: abstractrt ledger 1a2b3c4d --verify    |   abstractrt ledger 1a2b3c4d --follow
    """
    from ..ops import queries as ops

    if follow:
        if verify:
            from ..errors import UsageError

            raise UsageError("use --verify or --follow, not both")
        from .lifecycle import follow as follow_ledger

        return follow_ledger(call, run)
    s = call.session()
    if verify:
        report = ops.verify(s, run)
        if call.json:
            render.print_json(report)
        elif report["ok"]:
            render.Printer().line(render.verified_line(report))
        if not report["ok"]:
            render.err(f"error: ledger of run {report['run_id']} failed verification: {report['message']}")
        return result_exit(errors=0 if report["ok"] else 1)
    data = ops.ledger(s, run)
    if call.json:
        render.print_json(data["records"])
        return result_exit()
    p = render.Printer()
    r = data["run"]
    p.line(f"ledger of run {r.run_id} ({r.workflow_id}, {r.status.value}): "
           f"{render.plural(len(data['records']), 'record')}", style="bold")
    p.table(render.ledger_table(data["records"]))
    return result_exit()
