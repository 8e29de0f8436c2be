"""What every command shares: its options, the one error edge, and the one exit rule.

A command is a thin function ``fn(call, **its options)`` registered with ``@command``.
``command`` adds the global options (``--json``, ``--data-dir``, ``--workflows``,
``--store``) to its signature, merges them with those given before the command name
(``ctx.obj``), runs it, and turns whatever it raises into one line on stderr (and the
``--json`` error document on stdout) with the error's exit code. The command returns the
exit code of its result, decided by ``result_exit``.
"""

import functools
import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, List, NoReturn, Optional, Tuple

import typer

from ..errors import (
    EXIT_BUSY, EXIT_ERROR, EXIT_OK, EXIT_RUN_FAILED, AbstractRTError, InternalError,
    InterruptedByUser,
)
from . import render

EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what any Unix tool whose reader went away exits with


class Globals:
    """Options given before the command name (kept in ``ctx.obj``), or the command's own."""

    def __init__(self, data_dir: Optional[Path] = None, workflows: Optional[Path] = None,
                 store: Optional[str] = None, json: bool = False,
                 json_requested: bool = False, as_actor: Optional[str] = None) -> None:
        self.data_dir = data_dir
        self.workflows = workflows
        self.store = store
        self.json = json
        self.as_actor = as_actor  # --as NAME (a store that authenticates sets it; PRODUCT §8)
        # ``--json`` anywhere on the command line, seen before parsing: an eager option
        # (--version) or a usage error is answered before the option itself is parsed.
        self.json_requested = json_requested

    def merged(self, *, json: bool, data_dir: Optional[Path], workflows: Optional[Path],
               store: Optional[str], as_actor: Optional[str] = None) -> "Globals":
        """These options with a command's own on top (given ones win)."""
        return Globals(
            data_dir=data_dir if data_dir is not None else self.data_dir,
            workflows=workflows if workflows is not None else self.workflows,
            store=store if store is not None else self.store,
            json=json or self.json, json_requested=self.json_requested,
            as_actor=as_actor if as_actor is not None else self.as_actor)


def wants_json(args: Iterable[str]) -> bool:
    for a in args:
        if a == "--":
            return False
        if a == "--json":
            return True
    return False


class Call:
    """One command invocation: its options, and the session it opens when asked."""

    def __init__(self, g: Globals) -> None:
        self.g = g
        self._session: Any = None

    @property
    def json(self) -> bool:
        return self.g.json

    def session(self) -> Any:
        """The session over the settings in effect (resolved once, before the command runs)."""
        if self._session is None:
            from ..ops.session import Session
            from ..settings import resolve

            self._session = Session(resolve(self.g.data_dir, self.g.workflows, self.g.store),
                                    as_actor=self.g.as_actor)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def result_exit(*, runs: Iterable[Any] = (), failed: int = 0, errors: int = 0, busy: int = 0) -> int:
    """The one rule for a command's exit code once it has done its work (PRODUCT.md §4).

    A problem the command reports (exit 1) comes first, then runs another process held
    (exit 4: try again), then a run it drove that ended failed (exit 3; ``failed`` counts
    such runs when the command only has a summary).
    """
    if errors:
        return EXIT_ERROR
    if busy:
        return EXIT_BUSY
    if failed or any(r.status.value == "failed" for r in runs):
        return EXIT_RUN_FAILED
    return EXIT_OK


# ---------------------------------------------------------------------------- the error edge


def fail(exc: AbstractRTError, as_json: bool) -> NoReturn:
    render.err(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
    if as_json:
        render.print_json(exc.to_jsonable())
    raise typer.Exit(exc.exit_code)


def closed_pipe() -> NoReturn:
    """Output went into a closed pipe (``| head -1``): stop quietly, like any Unix tool."""
    try:
        # The interpreter flushes stdout once more at exit: let that go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests): nothing will flush into a pipe
    raise typer.Exit(EXIT_CLOSED_PIPE)


def _debug() -> bool:
    return bool(os.environ.get("ABSTRACTRT_DEBUG"))


def run_command(fn: Callable[..., Optional[int]], call: Call, kwargs: dict) -> None:
    as_json = call.json
    code: Optional[int] = None
    try:
        try:
            with render.command_output():
                # Settings first, for every command: a config file named by ABSTRACTRT_CONFIG
                # that does not exist is wrong usage before anything else is read or done.
                session = call.session()
                if call.g.as_actor is not None:
                    # --as first: refused at once where the store cannot authenticate, and
                    # on a database everything the command does runs as that role.
                    session.actor()
                code = fn(call, **kwargs)
                render.flush()
        finally:
            call.close()
    except AbstractRTError as exc:
        fail(exc, as_json)
    except BrokenPipeError:
        closed_pipe()
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except KeyboardInterrupt:
        fail(InterruptedByUser(), as_json)
    except Exception as exc:  # a bug: say so plainly; traceback only when asked
        if _debug():
            raise
        fail(InternalError(exc), as_json)
    if code:
        raise typer.Exit(code)


# ---------------------------------------------------------------------------- shared options


def _completion_session(ctx: typer.Context) -> Any:
    """The session a shell completion reads from: options typed so far, then env/config."""
    from ..ops.session import Session
    from ..settings import resolve

    values: dict = {}
    node: Any = ctx
    while node is not None:  # the command's own options win over the global ones
        for key in ("data_dir", "workflows", "store"):
            if values.get(key) is None and node.params.get(key) is not None:
                values[key] = node.params[key]
        node = node.parent
    return Session(resolve(values.get("data_dir"), values.get("workflows"), values.get("store")))


def complete_runs(ctx: typer.Context, incomplete: str) -> List[Tuple[str, str]]:
    try:
        from ..ops.admin import complete_run_ids

        return [(c["value"], c["help"]) for c in complete_run_ids(_completion_session(ctx), incomplete)]
    except AbstractRTError:
        return []


def complete_workflows(ctx: typer.Context, incomplete: str) -> List[Tuple[str, str]]:
    try:
        from ..ops.admin import complete_workflow_ids

        return [(c["value"], c["help"])
                for c in complete_workflow_ids(_completion_session(ctx), incomplete)]
    except AbstractRTError:
        return []


JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
DataDirOption = Annotated[Optional[Path], typer.Option(
    "--data-dir", help="Where runs and ledgers live (env: ABSTRACTRT_DATA_DIR).",
    show_default=False)]
WorkflowsOption = Annotated[Optional[Path], typer.Option(
    "--workflows", help="The workflows directory (env: ABSTRACTRT_WORKFLOWS; default: ./workflows).",
    show_default=False)]
StoreOption = Annotated[Optional[str], typer.Option(
    "--store", help="The store: a directory or a postgresql:// URL (env: ABSTRACTRT_STORE; "
                    "default: files in the data dir).", show_default=False)]
RunArgument = Annotated[str, typer.Argument(
    help="Run id or unique prefix (6+ chars).", show_default=False, autocompletion=complete_runs)]
OptionalRunArgument = Annotated[Optional[str], typer.Argument(
    help="Run id or unique prefix (6+ chars).", show_default=False, autocompletion=complete_runs)]
WorkflowArgument = Annotated[str, typer.Argument(
    help="The workflow id.", show_default=False, autocompletion=complete_workflows)]
MaxStepsOption = Annotated[int, typer.Option("--max-steps", min=1, help="Most node steps per tick.")]
SetOption = Annotated[Optional[List[str]], typer.Option(
    "--set", help="KEY=VALUE (repeatable; VALUE parsed as JSON when it is JSON).", show_default=False)]
PayloadOption = Annotated[Optional[str], typer.Option(
    "--payload", help="Payload as inline JSON ('{}' sends an empty one).", show_default=False)]
PayloadFileOption = Annotated[Optional[str], typer.Option(
    "--payload-file", help="Payload from a JSON or YAML file, or - for standard input.",
    show_default=False)]
AnswerOption = Annotated[Optional[str], typer.Option(
    "--answer", help='Shorthand for the payload {"response": TEXT}.', show_default=False)]
AsOption = Annotated[Optional[str], typer.Option(
    "--as", help="Act as this name, where the store authenticates it (PostgreSQL: SET ROLE); "
                 "default: ABSTRACTRT_ACTOR, else the login name.", show_default=False)]

_KW = inspect.Parameter.KEYWORD_ONLY
_GLOBAL_PARAMS = [
    inspect.Parameter("json_out", _KW, default=False, annotation=JsonOption),
    inspect.Parameter("data_dir", _KW, default=None, annotation=DataDirOption),
    inspect.Parameter("workflows", _KW, default=None, annotation=WorkflowsOption),
    inspect.Parameter("store", _KW, default=None, annotation=StoreOption),
    inspect.Parameter("as_actor", _KW, default=None, annotation=AsOption),
]
_GLOBAL_NAMES = [p.name for p in _GLOBAL_PARAMS]

#: (name, wrapper, Typer command settings) in registration order; ``app`` adds them.
COMMANDS: List[Tuple[str, Callable[..., Any], dict]] = []


def command(name: str, **settings: Any) -> Callable[[Callable[..., Optional[int]]], Callable[..., None]]:
    """Register ``fn(call, **options)`` as command ``name``, with the global options added."""

    def deco(fn: Callable[..., Optional[int]]) -> Callable[..., None]:
        own = list(inspect.signature(fn).parameters.values())[1:]  # the first is the Call
        clash = {p.name for p in own} & set(_GLOBAL_NAMES)
        assert not clash, f"{name}: options {clash} are added to every command"

        @functools.wraps(fn)
        def wrapper(ctx: typer.Context, **kwargs: Any) -> None:
            g: Globals = ctx.obj if isinstance(ctx.obj, Globals) else Globals()
            given = {k: kwargs.pop(k) for k in _GLOBAL_NAMES}
            g = g.merged(json=bool(given["json_out"]), data_dir=given["data_dir"],
                         workflows=given["workflows"], store=given["store"],
                         as_actor=given["as_actor"])
            run_command(fn, Call(g), kwargs)

        ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                      annotation=typer.Context)
        wrapper.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [ctx_param, *own, *_GLOBAL_PARAMS])
        wrapper.__annotations__ = {"ctx": typer.Context}
        del wrapper.__wrapped__  # Typer must read the signature above, not fn's
        COMMANDS.append((name, wrapper, settings))
        return wrapper

    return deco
