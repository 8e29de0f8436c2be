"""Store administration, settings and keys: reindex, config, key."""

from enum import Enum
from typing import Annotated

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
