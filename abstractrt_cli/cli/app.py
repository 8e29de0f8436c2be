"""The ``abstractrt`` command: the Typer app, its global options, and usage errors.

Commands live in one module per group (``runs``, ``events``, ``queries``, ``answers``,
``admin``) and are thin: each parses its arguments, calls one function in ``ops`` and
renders what comes back. ``common`` holds the one error edge and the one exit rule.
Modules import what they need inside each command, and a command's module is imported
only when that command is asked for (``COMMAND_MODULES``), so ``abstractrt tick RUN``
loads neither rich nor YAML nor the code of other commands.
"""

import importlib
import sys
from collections.abc import MutableMapping
from typing import Annotated, Any, Callable, Dict, Iterator, List, Optional

import typer
from typer.core import TyperGroup
from typer.models import CommandInfo

from ..errors import EXIT_USAGE, UsageError
from . import common
from .common import DataDirOption, Globals, JsonOption, StoreOption, WorkflowsOption


class LazyCommands(MutableMapping):
    """The group's commands, each built from its function only when it is asked for.

    Typer builds a click command per function up front (reading every signature); a
    command run by cron every minute needs one of them, so the others are never built.
    ``--help`` and completion list them all, and build them then.
    """

    def __init__(self, factories: Dict[str, Callable[[], Any]]) -> None:
        self._factories = dict(factories)
        self._built: Dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            factory = self._factories[name]  # KeyError: no such command
            self._built[name] = factory()
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._factories.setdefault(name, lambda: command)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._factories[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


class AbstractRTGroup(TyperGroup):
    """Typer's group, with its commands built lazily, and ``--json`` honoured before
    parsing and by usage errors."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = LazyCommands({name: _factory(name) for name in COMMAND_MODULES})

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


#: Every command and the module of ``cli/`` that defines it, in the order of
#: ``abstractrt --help``: the life of a run, then reading, then administration.
COMMAND_MODULES: Dict[str, str] = {
    "workflows": "queries", "start": "runs", "tick": "runs", "resume": "runs",
    "answer": "answers", "emit": "events", "events": "events", "waiting": "queries",
    "runs": "queries", "show": "queries", "ledger": "queries", "logs": "lifecycle",
    "cancel": "runs", "limits": "runs", "retry": "lifecycle", "snapshot": "lifecycle",
    "snapshots": "lifecycle", "fork": "lifecycle", "artifacts": "lifecycle",
    "artifact": "lifecycle", "export": "lifecycle", "import": "lifecycle", "prune": "lifecycle",
    "pruned": "lifecycle", "worker": "worker", "doctor": "lifecycle", "store": "admin",
    "reindex": "admin", "config": "admin", "key": "admin",
}


def command_info(name: str) -> CommandInfo:
    """Command ``name``, its module imported (which registers it in ``common.COMMANDS``)."""
    importlib.import_module(f".{COMMAND_MODULES[name]}", __package__)
    for registered, fn, settings in common.COMMANDS:
        if registered == name:
            return CommandInfo(name, callback=fn, **settings)
    raise KeyError(name)


def __getattr__(attr: str) -> Any:
    if attr == "COMMAND_INFOS":  # every command, in help order (imports every module)
        return [command_info(name) for name in COMMAND_MODULES]
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _factory(name: str) -> Callable[[], Any]:
    def build() -> Any:
        from typer.main import get_command_from_info

        return get_command_from_info(command_info(name),
                                     pretty_exceptions_short=app.pretty_exceptions_short,
                                     rich_markup_mode=app.rich_markup_mode)

    return build


def main() -> None:
    """Console-script entry point."""
    app()

