"""Store administration, settings and keys: reindex, config, key."""

from enum import Enum
from typing import Annotated, Optional

import typer

from . import render
from .common import Call, command, result_exit


class KeyAction(str, Enum):
    init = "init"


@command("reindex")
def reindex_cmd(call: Call) -> int:
    """Rebuild the query index from the run files (after restoring runs from a backup).

    Example: abstractrt reindex
    """
    from ..ops import admin as ops

    counts = ops.reindex(call.session())
    if call.json:
        render.print_json(counts)
    elif counts.get("reindexed") is False:
        render.Printer().line(f"nothing to reindex: {counts.get('why')}")
    else:
        render.Printer().line(
            f"reindexed {render.plural(counts.get('runs', 0), 'run')} in "
            f"{counts.get('seconds', 0):.2f}s; {counts.get('corrupt', 0)} corrupt, "
            f"{render.plural(counts.get('removed', 0), 'stale entry', 'stale entries')} removed")
    return result_exit(errors=counts.get("corrupt", 0))


@command("config")
def config_cmd(call: Call) -> int:
    """Show the settings in effect (data dir, workflows dir, store, config file) and where each came from.

    Example: abstractrt config --json
    """
    from ..ops import admin as ops

    report = ops.config_report(call.session())
    if call.json:
        render.print_json(report)
    else:
        render.Printer().table(render.config_table(report))
    return result_exit()


@command("key")
def key_cmd(
    call: Call,
    action: Annotated[KeyAction, typer.Argument(help="init: create the signing key.",
                                                show_default=False)],
) -> int:
    """Create the key that signs checkpoints (HMAC-SHA256, kept 0600 outside the data dir).

    Then every checkpoint is signed, and `ledger RUN --verify` checks the signature.

    Example: abstractrt key init
    """
    from ..ops import admin as ops

    result = ops.key_init()
    if call.json:
        render.print_json(result)
    else:
        render.Printer().line(f"created signing key {result['key_file']} (mode 0600); "
                              "checkpoints are signed from now on")
    return result_exit()


class StoreAction(str, Enum):
    info = "info"
    copy = "copy"


@command("store")
def store_cmd(
    call: Call,
    action: Annotated[StoreAction, typer.Argument(
        help="info: the store in use; copy: copy everything between two stores.",
        show_default=False)],
    src: Annotated[Optional[str], typer.Option(
        "--from", help="copy: the source store (a data dir or a postgresql:// URL).",
        show_default=False)] = None,
    dst: Annotated[Optional[str], typer.Option(
        "--to", help="copy: the destination store (a data dir or a postgresql:// URL).",
        show_default=False)] = None,
) -> int:
    """Show the store in use (`info`), or copy every run between two stores (`copy`).

    `store copy` copies every run, ledger, kept event, snapshot, artifact, prune record and
    log, verifies every chain on arrival, is safe to re-run, and never changes the source;
    a run that differs at the destination is a conflict (exit 1), never overwritten.

    Example: abstractrt store copy --from ~/.local/share/abstractrt --to postgresql://me@db/work
    """
    from ..errors import UsageError
    from ..ops import admin as ops

    if action is StoreAction.info:
        if src or dst:
            raise UsageError("store info takes no --from/--to (use --store to name the store)")
        info = ops.store_info(call.session())
        if call.json:
            render.print_json(info)
        else:
            p = render.Printer()
            for k, v in info.items():
                if k == "workers":
                    for w in v:
                        p.line(f"worker {w.get('worker_id')}: last beat {w.get('beat_at')} "
                               f"(every {w.get('interval')} s, pid {w.get('pid')} on {w.get('host')})")
                    continue
                p.line(f"{k}: {v}")
        return result_exit()
    if not src or not dst:
        raise UsageError("store copy needs --from SRC and --to DST (data dirs or postgresql:// URLs)")
    report = ops.store_copy(call.session(), src, dst)
    if call.json:
        render.print_json(report)
    else:
        p = render.Printer()
        p.line(f"copied {report['copied']} of {report['runs']} runs from {report['from']} to "
               f"{report['to']} ({report['unchanged']} unchanged, "
               f"{report['records_copied']} ledger records)")
        for note in report.get("notes", []):
            p.line(f"  note: {note}")
        for c in report.get("conflicts", []):
            render.err(f"error: conflict: run {c['run_id']}: {c['why']}")
        for e in report.get("errors", []):
            render.err(f"error: run {e.get('run_id')}: {e['why']}")
    return result_exit() if report.get("ok") else 1
