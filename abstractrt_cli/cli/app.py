"""The ``abstractrt`` command: the Typer app, its global options, and usage errors.

Commands live in one module per group (``runs``, ``events``, ``queries``, ``answers``,
``admin``) and are thin: each parses its arguments, calls one function in ``ops`` and
renders what comes back. ``common`` holds the one error edge and the one exit rule.
Modules import what they need inside each command, so ``abstractrt tick RUN`` loads
neither rich nor YAML nor the code of other commands.
"""

import sys
from typing import Annotated, Any, List, Optional

import typer
from typer.core import TyperGroup

from ..errors import EXIT_USAGE, UsageError
from . import admin, answers, common, events, queries, runs  # noqa: F401 - they register commands
from .common import DataDirOption, Globals, JsonOption, StoreOption, WorkflowsOption


class AbstractRTGroup(TyperGroup):
    """Typer's group, with ``--json`` honoured before parsing and by usage errors."""

    def parse_args(self, ctx: Any, args: List[str]) -> List[str]:
        obj = ctx.ensure_object(Globals)
        obj.json_requested = common.wants_json(args)
        return super().parse_args(ctx, args)

    def main(self, args: Optional[List[str]] = None, prog_name: Optional[str] = None,
             complete_var: Optional[str] = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or not common.wants_json(argv):
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        # With --json, a usage error is the JSON error document too (code "usage", exit 2).
        try:
            rv = super().main(argv, prog_name, complete_var, False, **extra)
        except typer.TyperException as exc:  # Typer's parse errors (click's, bundled)
            code = getattr(exc, "exit_code", EXIT_USAGE)
            err = UsageError(exc.format_message())
            err.exit_code = code
            render_usage_error(err)
            sys.exit(code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def render_usage_error(err: UsageError) -> None:
    from . import render

    render.err(f"error: {err.message}")
    render.print_json(err.to_jsonable())


app = typer.Typer(
    name="abstractrt",
    cls=AbstractRTGroup,
    help="Durable workflow runner: start, tick, resume and answer checkpointed workflow runs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(ctx: typer.Context, value: bool) -> None:
    if not value:
        return
    from .. import __version__

    obj = ctx.obj if isinstance(ctx.obj, Globals) else Globals()
    if obj.json_requested:
        import json

        sys.stdout.write(json.dumps({"version": __version__}) + "\n")
    else:
        sys.stdout.write(f"abstractrt {__version__}\n")
    raise typer.Exit(0)


@app.callback()
def _main(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    workflows: WorkflowsOption = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit (with --json: as JSON).")] = False,
) -> None:
    """Durable workflow runner: start, tick, resume and answer checkpointed workflow runs.

    Example: abstractrt start approval --set amount=120
    """
    obj = ctx.ensure_object(Globals)
    obj.data_dir, obj.workflows, obj.store, obj.json = data_dir, workflows, store, json_out


# The order of `abstractrt --help`: the life of a run, then reading, then administration.
_ORDER = ["workflows", "start", "tick", "resume", "answer", "emit", "waiting", "runs", "show",
          "ledger", "cancel", "limits", "reindex", "config", "key"]

for _name, _fn, _settings in sorted(common.COMMANDS, key=lambda c: _ORDER.index(c[0])
                                    if c[0] in _ORDER else len(_ORDER)):
    app.command(_name, **_settings)(_fn)


def main() -> None:
    """Console-script entry point."""
    app()

