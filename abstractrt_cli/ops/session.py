"""The composition root of a command: settings, stores, workflows and the runtime.

A ``Session`` is what one command sees of the world. It opens the stores the settings
name (``storage.open_stores``: it alone decides which store), loads the workflows
directory only when a command needs it, names runs by id or prefix, and adds hints for
people to the kernel's errors (``with_hint``): the kernel is a library and gives no
command-line advice.
"""

from __future__ import annotations

import functools
import os
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TypeVar

from ..core.models import RunState
from ..errors import (
    AbstractRTError,
    AmbiguousRunError,
    LedgerMismatchError,
    RunBusyError,
    UnknownRunError,
    UnknownWorkflowError,
    UsageError,
    WorkflowLoadError,
)
from ..settings import Settings

MIN_PREFIX = 6

# Advice for people, added to an error that carries none (PRODUCT.md §4: one clear line).
_HINTS = (
    (UnknownRunError, "list runs with `abstractrt runs`"),
    (RunBusyError, "try again later"),
    (LedgerMismatchError, "see `abstractrt ledger RUN --verify`"),
)

F = TypeVar("F", bound=Callable[..., Any])


def add_hint(exc: AbstractRTError) -> AbstractRTError:
    """The error with the advice for its kind, unless it already has a hint."""
    if exc.hint is None:
        for cls, hint in _HINTS:
            if isinstance(exc, cls):
                run_id = getattr(exc, "run_id", None)
                exc.with_hint(hint.replace("RUN", run_id) if run_id else hint)
                break
    return exc


def hinted(fn: F) -> F:
    """An operation whose errors reach people with the advice for their kind."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AbstractRTError as exc:
            raise add_hint(exc) from exc.__cause__

    return wrapper  # type: ignore[return-value]


class Outcome:
    """A run after an operation, with messages for the person (printed on stderr)."""

    # A plain class: this module is imported by every command (a dataclass costs its
    # generated methods at import).
    def __init__(self, run: RunState, warnings: Optional[List[str]] = None) -> None:
        self.run = run
        self.warnings = warnings if warnings is not None else []


def waiting_since(run: RunState) -> str:
    """When the run's wait began: kept by the kernel across limit changes and retries (a
    run checkpointed before waits recorded it: its last update)."""
    w = run.waiting
    return (w.since if w is not None and w.since else None) or run.updated_at


def url_without_password(store: str) -> str:
    """A store URL (or directory) with no password in it, neither ``user:pw@`` nor
    ``?password=``."""
    if "://" not in store:
        return store
    from urllib.parse import urlsplit

    parts = urlsplit(store)
    creds, at, hosts = parts.netloc.rpartition("@")
    netloc = (creds.split(":", 1)[0] + at + hosts) if at else hosts
    # The rest stays exactly as written (libpq decodes it; urlunsplit would drop the
    # empty host of postgresql:///db).
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("password="))
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def database_role(stores: Any, as_actor: Optional[str]) -> Optional[str]:
    """The role the database server authenticated for this session (``SET ROLE`` to
    ``as_actor`` first, which the server allows only to a member of that role), or None
    when the store exposes no database session to ask."""
    connector = getattr(getattr(stores.runs, "db", None), "connector", None)
    if connector is None or not hasattr(connector, "fetchone"):
        return None
    if as_actor is not None:
        try:
            # set_config('role', ...) is SET ROLE with the name passed as a parameter.
            connector.fetchone("SELECT set_config('role', %s, false)", (as_actor,))
        except AbstractRTError as exc:
            raise exc.with_hint(f"--as {as_actor} needs a database role of that name that "
                                f"your login role is a member of (GRANT {as_actor} TO ...)"
                                ) from exc.__cause__
    row = connector.fetchone("SELECT current_user")
    return str(row[0]) if row and row[0] else None


class Session:
    """One command's view of the world: settings, stores, and (lazily) the workflows."""

    #: Set by the operations that create runs: only they may create the data dir.
    creates_runs = False

    def __init__(self, settings: Settings, *, as_actor: Optional[str] = None) -> None:
        self.settings = settings
        self.as_actor = as_actor  # ``--as NAME``: only a store that authenticates takes it
        self._actor: Optional[str] = None

    def actor(self) -> str:
        """Who is acting (PRODUCT §8): on a store that authenticates (PostgreSQL: the
        database role, ``--as NAME`` sets it), the name the store vouches for; else
        ``ABSTRACTRT_ACTOR``, else the login name — which nothing checks, and ``--as``
        is refused rather than pretending it could be."""
        if self._actor is None:
            self._actor = self._resolve_actor()
        return self._actor

    def _resolve_actor(self) -> str:
        from ..settings import current_actor

        store = self.settings.store
        if store is not None and "://" in store:  # a database, not a directory of files
            role = database_role(self.stores, self.as_actor)
            if role is not None:
                return role
        if self.as_actor is not None:
            if store is not None and "://" in store:
                why = f"the store at {self.stores.location} exposes no database role to set"
            else:
                why = ("files cannot authenticate who you are (whoever can write the data "
                       "dir can write any name into it), so the file store takes no --as; "
                       "ABSTRACTRT_ACTOR names you there, unchecked")
            raise UsageError(f"--as {self.as_actor}: {why}").with_hint(
                "--as needs a store that authenticates, such as PostgreSQL, where it sets "
                "the database role")
        return current_actor()

    @cached_property
    def stores(self) -> Any:
        """The ``storage.base.Stores`` bundle; a query never creates a missing data dir."""
        from ..storage import open_stores

        return open_stores(self.settings.store, self.settings.data_dir, create=self.creates_runs)

    @property
    def run_store(self) -> Any:
        return self.stores.runs

    @property
    def ledger_store(self) -> Any:
        return self.stores.ledger

    @cached_property
    def workflows(self) -> Any:
        from ..loader import load_workflows

        return load_workflows(self.settings.workflows_dir)

    def runtime(self, *, lock_timeout: Optional[float] = None) -> Any:
        from ..core.config import RuntimeConfig
        from ..core.runtime import Runtime

        from ..core.integrity import KEY_FILE_NAME, load_signing_key
        from ..settings import user_config_dir

        # With a key, every checkpoint is signed (ABSTRACTRT_SIGNING_KEY, else the key file).
        key = load_signing_key(user_config_dir() / KEY_FILE_NAME)
        # The config key ``llm`` turns on the built-in llm_call (PRODUCT §10).
        options: Dict[str, Any] = {"signing_key": key, "llm": self.settings.llm}
        if lock_timeout is not None:
            options["lock_timeout"] = lock_timeout
        config = RuntimeConfig(**options)
        st = self.stores
        # Node code reaches the store's artifacts (ctx.artifacts), what it prints is kept
        # in the run's log, and a wait_event finds a kept event (PRODUCT §8, §9).
        return Runtime(run_store=self.run_store, ledger_store=self.ledger_store,
                       workflow_registry=self.workflows.registry, config=config,
                       artifact_store=st.artifacts, log_store=st.logs, event_store=st.events,
                       on_transition=self.hook_runner)

    @cached_property
    def hook_runner(self) -> Any:
        """The notification hooks (config key ``hooks``) every runtime of this session
        runs after each wait, completion or failure it makes durable; None without hooks."""
        from ..settings import load_hooks

        hooks, _source = load_hooks(self.settings)
        if not hooks:
            return None
        from ..hooks import make_runner

        st = self.settings
        env = {"ABSTRACTRT_WORKFLOWS": str(st.workflows_dir)}
        if st.store is not None:
            env["ABSTRACTRT_STORE"] = st.store  # the hook is the user's own process: the URL as given
        else:
            env["ABSTRACTRT_DATA_DIR"] = str(st.data_dir)
        return make_runner(hooks, self.answer_command, env)

    def answer_command(self, run: RunState) -> str:
        """The shell-quoted command that answers ``run`` interactively, reaching this
        store and these workflows. A store URL goes without its password: the command is
        shown to people (a notification, a mail); libpq finds it in PGPASSWORD or ~/.pgpass."""
        import shlex

        st = self.settings
        args = ["abstractrt"]
        if st.store is not None:
            args += ["--store", url_without_password(st.store)]
        else:
            args += ["--data-dir", str(st.data_dir)]
        args += ["--workflows", str(st.workflows_dir), "answer", run.run_id]
        return shlex.join(args)

    def take_hook_warnings(self) -> List[str]:
        """The warnings of the hooks run so far (a hook failed or timed out), once each."""
        runner = self.__dict__.get("hook_runner")
        if runner is None:
            return []
        warnings, runner.warnings = runner.warnings, []
        runner.ran.clear()  # a worker runs for days: keep nothing per hook run
        return warnings

    def store_missing(self) -> bool:
        """A file store whose directory does not exist yet (it reads as empty)."""
        st = self.stores
        return st.kind == "files" and not os.path.isdir(st.location)

    def where(self) -> str:
        """Which store a query read, for messages ("no runs in …")."""
        location = self.stores.location
        return f"{location} (no data dir there yet)" if self.store_missing() else location

    def close(self) -> None:
        # After the command, whatever it printed: a hook that failed is a warning, and
        # never changes the command's outcome or exit code.
        for line in self.take_hook_warnings():
            sys.stderr.write(line + "\n")
        if "stores" in self.__dict__:
            self.stores.close()

    # -- naming runs

    def load_run(self, ref: str) -> RunState:
        """A run by full id or unique prefix of 6+ characters."""
        rs = self.run_store
        ref = rs.validate_run_id(ref.strip())
        run = rs.load(ref)
        if run is not None:
            return run
        if len(ref) < MIN_PREFIX:
            raise UnknownRunError(ref).with_hint(
                f"a run id prefix needs at least {MIN_PREFIX} characters")
        matches = rs.match_prefix(ref, limit=11)
        if not matches:
            raise add_hint(UnknownRunError(ref))
        if len(matches) > 1:
            raise AmbiguousRunError(ref, matches)
        run = rs.load(matches[0])
        if run is None:  # deleted between the two reads
            raise add_hint(UnknownRunError(ref))
        return run

    def workflow_warnings(self, run: RunState) -> List[str]:
        """Checks a non-terminal run's workflow is loadable; warns when its code changed."""
        try:
            entry = self.workflows.entry(run.workflow_id)
        except UnknownWorkflowError:
            raise self._workflow_gone(run) from None
        warnings = []
        if run.workflow_fingerprint and entry.fingerprint and run.workflow_fingerprint != entry.fingerprint:
            warnings.append(f"warning: workflow {run.workflow_id!r} changed since run "
                            f"{run.run_id[:8]} started ({entry.source})")
        return warnings

    def _workflow_gone(self, run: RunState) -> WorkflowLoadError:
        where = self.settings.workflows_dir
        was = f" (it came from {run.workflow_source})" if run.workflow_source else ""
        err = WorkflowLoadError(f"run {run.run_id}'s workflow {run.workflow_id!r} is not in "
                                f"{where}{was}; the run is left as it was")
        if run.workflow_source:
            # Typically cron, started in another directory than the one the run came from.
            origin = Path(run.workflow_source).parent
            if origin != where:
                err.with_hint(f"use --workflows {origin}")
        return err
