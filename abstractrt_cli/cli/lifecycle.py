"""The life of a run: retry, snapshot(s), fork, artifacts, artifact cat, export, import,
prune, pruned, doctor, logs (and ``ledger --follow``'s output)."""

from enum import Enum
from typing import Annotated, Any, Dict, List, Optional

import typer

from . import render
from .common import Call, MaxStepsOption, RunArgument, command, complete_runs, result_exit

RunOption = Annotated[Optional[str], typer.Option(
    "--run", help="Only this run (id or prefix).", show_default=False, autocompletion=complete_runs)]
TagOption = Annotated[Optional[str], typer.Option("--tag", help="Only those with this tag.",
                                                  show_default=False)]


class ArtifactAction(str, Enum):
    cat = "cat"


def _warn(lines: List[str]) -> None:
    for line in lines:
        render.err(line)


def _out_run(call: Call, run: Any, heading: Optional[str] = None) -> None:
    if call.json:
        render.print_json(run.to_jsonable())
    else:
        render.Printer().card(render.run_summary_card(run, heading=heading))


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "?"
    if n >= 1024 ** 2:
        return f"{n / 1024 ** 2:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n} B"


# ---------------------------------------------------------------------------- retry


@command("retry")
def retry_cmd(
    call: Call,
    run: RunArgument,
    from_node: Annotated[Optional[str], typer.Option(
        "--from", help="Enter this node as a new visit (default: the node that failed).",
        show_default=False)] = None,
    max_steps: MaxStepsOption = 100,
) -> int:
    """Put a failed run back to running at its failed node (or --from NODE) and tick it.

    Effects recorded before the failure are not run again; the ledger records the retry
    and who did it. A run that has not failed is refused (exit 1).

    Example: abstractrt retry 1a2b3c4d --from fetch
    """
    from ..ops import lifecycle as ops

    outcome = ops.retry(call.session(), run, from_node=from_node, max_steps=max_steps)
    if not call.json:
        render.err(f"retried run {outcome.run.run_id}")
    _out_run(call, outcome.run)
    _warn(outcome.warnings)
    return result_exit(runs=[outcome.run])


# ---------------------------------------------------------------------------- snapshots, fork


def _snapshot_table(snaps: List[Dict[str, Any]]) -> render.Table:
    t = render.Table(columns=["run", "name", "tags", "status", "records", "taken", "by"])
    for sn in snaps:
        state = sn.get("state") or {}
        t.rows.append([render.short(str(sn.get("run_id"))), str(sn.get("name")),
                       ", ".join(sn.get("tags") or []), str(state.get("status") or ""),
                       str(sn.get("ledger_count")), render.clock(sn.get("created_at")),
                       str(sn.get("actor_id") or "")])
        t.styles.append(None)
    return t


@command("snapshot")
def snapshot_cmd(
    call: Call,
    run: RunArgument,
    name: Annotated[str, typer.Option("--name", help="The snapshot's name (unique per run).",
                                      show_default=False)],
    tags: Annotated[Optional[List[str]], typer.Option(
        "--tag", help="A tag (repeatable).", show_default=False)] = None,
) -> int:
    """Keep a named copy of a run's state, with the ledger count and head hash it covers.

    Example: abstractrt snapshot 1a2b3c4d --name before-deploy --tag release
    """
    from ..ops import lifecycle as ops

    snap = ops.snapshot(call.session(), run, name=name, tags=tags or [])
    if call.json:
        render.print_json(snap)
    else:
        render.Printer().line(
            f"snapshot {snap['name']!r} of run {snap['run_id']} kept "
            f"({snap['state']['status']}, {render.plural(snap['ledger_count'], 'ledger record')})"
            f"; fork from it with `abstractrt fork {snap['run_id']} --snapshot {snap['name']}`")
    return result_exit()


@command("snapshots")
def snapshots_cmd(call: Call, run: RunOption = None, tag: TagOption = None) -> int:
    """List snapshots (oldest first), of one run and/or with one tag.

    Example: abstractrt snapshots --run 1a2b3c4d
    """
    from ..ops import lifecycle as ops

    s = call.session()
    snaps = ops.snapshots(s, run=run, tag=tag)
    if call.json:
        render.print_json(snaps)
    elif snaps:
        render.Printer().table(_snapshot_table(snaps))
    else:
        render.Printer().line(f"no {'matching ' if run or tag else ''}snapshots in {s.where()}")
    return result_exit()


@command("fork")
def fork_cmd(
    call: Call,
    run: RunArgument,
    at: Annotated[Optional[int], typer.Option(
        "--at", help="The ledger record (its # in `ledger`) to fork right after.",
        show_default=False)] = None,
    snapshot: Annotated[Optional[str], typer.Option(
        "--snapshot", help="The snapshot to fork from.", show_default=False)] = None,
) -> int:
    """Create a new run (not ticked) from a run's state right after ledger record SEQ, or a snapshot.

    The source never changes; the new run's ledger starts with a `fork` record that names
    the source run, SEQ and the source's record hash there.

    Example: abstractrt fork 1a2b3c4d --at 3
    """
    from ..ops import lifecycle as ops

    outcome = ops.fork(call.session(), run, at=at, snapshot_name=snapshot)
    new = outcome.run
    if not call.json:
        where = f"snapshot {snapshot!r}" if snapshot is not None else f"record {at}"
        render.err(f"forked run {new.run_id} from run {run} at {where}")
    _out_run(call, new)
    _warn(outcome.warnings)
    return result_exit()


# ---------------------------------------------------------------------------- artifacts


def _artifact_table(metas: List[Dict[str, Any]]) -> render.Table:
    t = render.Table(columns=["ref", "size", "type", "name", "runs", "tags", "stored"])
    for m in metas:
        t.rows.append([str(m.get("ref")), _size(m.get("size")), str(m.get("content_type") or ""),
                       str(m.get("name") or ""),
                       ", ".join(render.short(r) for r in m.get("run_ids") or []),
                       ", ".join(m.get("tags") or []), render.clock(m.get("created_at"))])
        t.styles.append(None)
    return t


@command("artifacts")
def artifacts_cmd(call: Call, run: RunOption = None, tag: TagOption = None) -> int:
    """List artifacts (content-addressed blobs, oldest first), of one run and/or with one tag.

    Example: abstractrt artifacts --run 1a2b3c4d
    """
    from ..ops import lifecycle as ops

    s = call.session()
    metas = ops.artifacts(s, run=run, tag=tag)
    if call.json:
        render.print_json(metas)
    elif metas:
        render.Printer().table(_artifact_table(metas))
    else:
        render.Printer().line(f"no {'matching ' if run or tag else ''}artifacts in {s.where()}")
    return result_exit()


@command("artifact")
def artifact_cmd(
    call: Call,
    action: Annotated[ArtifactAction, typer.Argument(help="cat: write the artifact's bytes to stdout.",
                                                     show_default=False)],
    ref: Annotated[str, typer.Argument(help="The artifact's ref (sha256:…).", show_default=False)],
) -> int:
    """Write an artifact's exact bytes to stdout (with --json: its metadata and base64 bytes).

    Example: abstractrt artifact cat sha256:9f86d0… > report.pdf
    """
    from ..ops import lifecycle as ops

    meta, data = ops.artifact_cat(call.session(), ref)
    if call.json:
        import base64

        render.print_json({**meta, "data_base64": base64.b64encode(data).decode("ascii")})
        return result_exit()
    stream = render.out()
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a text-only stream: there is no way to write bytes through it
        from ..errors import UsageError

        raise UsageError("standard output takes no bytes here; use --json for base64")
    buffer.write(data)
    buffer.flush()
    return result_exit()


# ---------------------------------------------------------------------------- export, import


@command("export")
def export_cmd(
    call: Call,
    runs: Annotated[List[str], typer.Argument(help="Run ids or unique prefixes (6+ chars).",
                                              show_default=False, autocompletion=complete_runs)],
    children: Annotated[bool, typer.Option("--children", help="Also every run below them.")] = False,
) -> int:
    """Write runs with their ledgers, snapshots and artifacts as one JSON bundle on stdout.

    Example: abstractrt export 1a2b3c4d --children > bundle.json
    """
    from ..ops import lifecycle as ops

    bundle = ops.export(call.session(), runs, children=children)
    render.print_json(bundle)
    if not call.json:
        n = len(bundle["runs"])
        arts = sum(1 for r in bundle["runs"] for a in r["artifacts"] if "data" in a)
        render.err(f"exported {render.plural(n, 'run')} "
                   f"({render.plural(arts, 'artifact')}, format {bundle['format']})")
    return result_exit()


@command("import")
def import_cmd(
    call: Call,
    file: Annotated[str, typer.Argument(help="The bundle file, or - for standard input.",
                                        show_default=False)],
) -> int:
    """Import a bundle made by `export`: every chain is verified before anything is written.

    A run already here is accepted only if identical (the same bundle twice is fine);
    otherwise nothing is written and the import is refused (exit 1).

    Example: abstractrt --data-dir ./other import bundle.json
    """
    from ..ops import lifecycle as ops

    report = ops.import_(call.session(), file)
    if call.json:
        render.print_json(report)
        return result_exit()
    p = render.Printer()
    p.line(f"imported {render.plural(len(report['imported']), 'run')} "
           f"({render.plural(report['records'], 'ledger record')}, "
           f"{render.plural(report['snapshots'], 'snapshot')}, "
           f"{render.plural(report['artifacts'], 'artifact')}); "
           f"{len(report['unchanged'])} already here and identical; every chain verified")
    for rid in report["imported"]:
        p.line(f"  {rid}")
    return result_exit()


# ---------------------------------------------------------------------------- prune


def _prune_records_table(records: List[Dict[str, Any]]) -> render.Table:
    t = render.Table(columns=["run", "workflow", "status", "records", "head", "pruned", "by"])
    for r in records:
        t.rows.append([str(r.get("run_id")), str(r.get("workflow_id")), str(r.get("status")),
                       str(r.get("ledger_count")), str(r.get("ledger_head") or "")[:16],
                       render.clock(r.get("pruned_at")), str(r.get("actor_id") or "")])
        t.styles.append(None)
    return t


@command("prune")
def prune_cmd(
    call: Call,
    older_than: Annotated[str, typer.Option(
        "--older-than", help="Only runs that ended at least this long ago (0s, 30m, 7d).",
        show_default=False)],
    statuses: Annotated[Optional[List[str]], typer.Option(
        "--status", help="completed, failed or cancelled (repeatable; default: all three).",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; change nothing.")] = False,
) -> int:
    """Delete ended runs with their ledgers, snapshots, logs and the artifacts no kept run uses.

    Never a running or waiting run, nor one whose parent has not ended. Each pruned run
    leaves a prune record (id, workflow, status, ledger count and head hash): see `pruned`.

    Example: abstractrt prune --older-than 30d --status completed --dry-run
    """
    from ..ops import lifecycle as ops

    result = ops.prune(call.session(), older_than=older_than, statuses=statuses or [],
                       dry_run=dry_run)
    if call.json:
        render.print_json(result)
        return result_exit()
    p = render.Printer()
    if dry_run:
        runs = result["runs"]
        p.line(f"would prune {render.plural(len(runs), 'run')} and "
               f"{render.plural(len(result['artifacts']), 'artifact')} (dry run: nothing changed)")
        for r in runs:
            p.line(f"  {r['run_id']}  {r['workflow_id']}  {r['status']}  ended {render.clock(r['ended_at'])}")
    else:
        p.line(f"pruned {render.plural(len(result['pruned']), 'run')} and "
               f"{render.plural(len(result['artifacts']), 'artifact')}")
        if result["pruned"]:
            p.table(_prune_records_table(result["pruned"]))
    for sk in result["skipped"]:
        render.err(f"kept run {sk.get('run_id')}: {sk.get('why')}")
    return result_exit()


@command("pruned")
def pruned_cmd(call: Call) -> int:
    """List the prune records: what was pruned, with its final ledger count and head hash.

    Example: abstractrt pruned --json
    """
    from ..ops import lifecycle as ops

    s = call.session()
    records = ops.pruned(s)
    if call.json:
        render.print_json(records)
    elif records:
        render.Printer().table(_prune_records_table(records))
    else:
        render.Printer().line(f"no prune records in {s.where()}")
    return result_exit()


# ---------------------------------------------------------------------------- doctor


@command("doctor")
def doctor_cmd(
    call: Call,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what is safe (temp files, the index).")] = False,
) -> int:
    """Check the store and the workflows; report each problem with its fix (exit 1: errors).

    Errors: unreadable files, runs whose workflow is missing or broken, parents waiting on
    ended children, timers or deadlines overdue by more than 5 minutes, a stale worker
    heartbeat. Warnings: workflows changed, index drift, old store temp files.

    Example: abstractrt doctor --fix
    """
    from ..ops import lifecycle as ops

    report = ops.doctor(call.session(), fix=fix)
    if call.json:
        render.print_json(report)
        return result_exit(errors=0 if report["ok"] else 1)
    p = render.Printer()
    p.table(render.config_table({"version": report["version"], "settings": report["settings"]}))
    if not report["data_dir_exists"]:
        p.line("no data dir yet (it is created by the first run)")
    p.line(f"checked {render.plural(report['runs_checked'], 'run')}")
    for done in report["fixed"]:
        p.line(f"fixed: {done}", style="green")
    for prob in report["problems"]:
        style = "red" if prob["severity"] == "error" else "yellow"
        p.line(f"{prob['severity']}: {prob['message']}", style=style)
        p.line(f"  fix: {prob['fix']}")
    if not report["problems"]:
        p.line("no problems found", style="green")
    else:
        p.line(f"{render.plural(report['errors'], 'error')}, "
               f"{render.plural(report['warnings'], 'warning')}")
    return result_exit(errors=0 if report["ok"] else 1)


# ---------------------------------------------------------------------------- logs, follow


@command("logs")
def logs_cmd(call: Call, run: RunArgument) -> int:
    """What a run's node code printed or logged while it was ticked, with the step of each line.

    Only the last 1 MiB per run is kept; older output is dropped, and said so.

    Example: abstractrt logs 1a2b3c4d
    """
    from ..ops import lifecycle as ops

    data = ops.logs(call.session(), run)
    if call.json:
        render.print_json(data)
        return result_exit()
    p = render.Printer()
    if data["dropped_bytes"]:
        p.line(f"({_size(data['dropped_bytes'])} of older output dropped: only the last 1 MiB "
               "is kept)", style="yellow")
    if not data["entries"]:
        p.line(f"run {data['run_id']} printed nothing")
    for e in data["entries"]:
        head = (f"{render.clock(e.get('at'))}  step {e.get('effect_seq')}  {e.get('node_id')}"
                + ("" if e.get("stream") == "stdout" else f"  [{e.get('stream')}]"))
        for line in str(e.get("text", "")).rstrip("\n").split("\n"):
            p.line(f"{head}  {line}")
    return result_exit()


def _follow_line(rec: Dict[str, Any]) -> str:
    row = render.ledger_table([rec]).rows[0]
    seq, when, node, what, status, attempt, took, detail = row
    return (f"{seq:>4}  {when:<25}  {node:<14} {what:<12} {status:<10}"
            f"{(' try ' + attempt) if attempt and attempt != '1' else ''}"
            f"{('  ' + took) if took else ''}  {detail}").rstrip()


def follow(call: Call, run: str) -> int:
    """``ledger RUN --follow``: each record as it arrives, until the run ends (JSON Lines
    with --json); exit 0 when it completed or was cancelled, 3 when it failed."""
    import json

    from ..ops import lifecycle as ops

    printer = render.Printer()

    def show(rec: Dict[str, Any]) -> None:
        if call.json:
            stream = render.out()
            stream.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            stream.flush()
        else:
            printer.line(_follow_line(rec))
            render.flush()

    final = ops.follow_ledger(call.session(), run, show)
    if not call.json:
        render.err(f"run {final.run_id} {final.status.value}")
    return result_exit(runs=[final])
