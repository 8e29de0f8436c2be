"""One exception tree for abstractrt: every error knows its exit code, code and message.

Exit codes (PRODUCT.md §4): 1 the command could not do what was asked, 2 wrong usage,
3 the run ended failed (not an exception: see ``EXIT_RUN_FAILED``), 4 the run is busy
in another process. ``code`` is a stable string per kind of error (``run_not_found``),
for scripts that read ``--json`` errors; ``tests/test_errors.py`` keeps them unique.

Messages say what went wrong and never carry command-line advice: the kernel is a
library. The ``ops`` layer adds hints for people with ``with_hint``.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional


EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3  # the command worked, but the run it drove ended failed
EXIT_BUSY = 4
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it


class AbstractRTError(Exception):
    """Root of every error abstractrt raises on purpose."""

    exit_code = EXIT_ERROR
    code = "error"

    def __init__(self, message: str, *, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return self.message

    def with_hint(self, hint: str) -> "AbstractRTError":
        self.hint = hint
        return self

    def to_jsonable(self) -> dict:
        """The ``--json`` error document."""
        doc = {"code": self.code, "exit": self.exit_code, "message": self.message}
        if self.hint:
            doc["hint"] = self.hint
        return {"error": doc}


class UsageError(AbstractRTError):
    """The command was called wrongly (exit 2)."""

    code = "usage"

    exit_code = EXIT_USAGE


class UnknownRunError(AbstractRTError, KeyError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no such run: {run_id}")
        self.run_id = run_id


class AmbiguousRunError(AbstractRTError, KeyError):
    code = "run_ambiguous"

    def __init__(self, prefix: str, candidates: Iterable[str]) -> None:
        cands = sorted(candidates)
        shown = ", ".join(cands[:10]) + (" …" if len(cands) > 10 else "")
        super().__init__(f"run prefix {prefix!r} is ambiguous: matches {shown}")
        self.prefix = prefix
        self.candidates = cands


class InvalidRunIdError(AbstractRTError, ValueError):
    code = "invalid_run_id"

    def __init__(self, run_id: str, why: str = "") -> None:
        super().__init__(f"invalid run id {run_id!r}" + (f": {why}" if why else ""))
        self.run_id = run_id


class UnknownWorkflowError(AbstractRTError, KeyError):
    code = "workflow_not_found"

    def __init__(self, workflow_id: str, known: Iterable[str] = (), *,
                 directory: Optional[str] = None) -> None:
        known = sorted(known)
        where = f" (workflows directory {directory} does not exist)" if directory else ""
        hint = ("known workflows: " + ", ".join(known)) if known else None
        super().__init__(f"no such workflow: {workflow_id}{where}", hint=hint)
        self.workflow_id = workflow_id


class WorkflowLoadError(AbstractRTError):
    """A workflow file failed to import, or its workflow cannot be used."""

    code = "workflow_broken"

    def __init__(self, message: str, *, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path


class DuplicateWorkflowError(AbstractRTError):
    code = "workflow_duplicate"

    def __init__(self, workflow_id: str, first: str, second: str) -> None:
        super().__init__(f"workflow {workflow_id!r} is defined twice: in {first} and in {second}")
        self.workflow_id = workflow_id
        self.paths = (first, second)


class RunNotWaitingError(AbstractRTError, ValueError):
    code = "run_not_waiting"

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is not waiting (status: {status})")
        self.run_id = run_id
        self.status = status


class NoPromptError(RunNotWaitingError):
    """``answer RUN``: neither the run nor any of its children waits for a person."""

    code = "no_prompt"

    def __init__(self, run_id: str, status: str, why: str) -> None:
        AbstractRTError.__init__(
            self, f"run {run_id} is not waiting for a person's answer, nor are its "
                  f"children ({why})")
        self.run_id = run_id
        self.status = status


class PromptMovedOnError(AbstractRTError):
    """The wait someone answered was answered elsewhere; the run has moved on."""

    code = "prompt_moved_on"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has moved on: that prompt was answered elsewhere")
        self.run_id = run_id


class WaitKeyMismatchError(AbstractRTError, ValueError):
    code = "wait_key_mismatch"

    def __init__(self, run_id: str, expected: Optional[str], given: str) -> None:
        super().__init__(f"run {run_id} waits on key {expected!r}, not {given!r}")
        self.run_id = run_id
        self.expected = expected
        self.given = given


class InvalidChoiceError(AbstractRTError, ValueError):
    code = "invalid_choice"

    def __init__(self, run_id: str, answer: Any, choices: Iterable[str]) -> None:
        choices = list(choices)
        what = "no answer" if answer is None else f"invalid answer {answer!r}"
        super().__init__(
            f"{what} for run {run_id}: must be one of "
            + ", ".join(repr(c) for c in choices)
        )
        self.run_id = run_id
        self.answer = answer
        self.choices = choices


class MenuNumberError(InvalidChoiceError):
    """A menu number that is not on the menu."""

    code = "menu_number"

    def __init__(self, run_id: str, answer: str, choices: Iterable[str]) -> None:
        choices = list(choices)
        InvalidChoiceError.__init__(self, run_id, answer, choices)
        n = len(choices)
        self.message = (f"there is no choice {answer} for run {run_id}: pick "
                        f"{'1' if n == 1 else f'1–{n}'}, or type the choice")
        self.args = (self.message,)


class PayloadError(AbstractRTError, ValueError):
    """A payload or vars document is not what it must be (a JSON object)."""

    code = "invalid_payload"


class InputFileError(AbstractRTError, OSError):
    code = "unreadable_file"

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"cannot read {path}: {why}")
        self.path = path


class CorruptRunError(AbstractRTError):
    code = "corrupt_run"

    def __init__(self, path: str, why: str, *, run_id: Optional[str] = None) -> None:
        what = "corrupt run" if "://" in path else "corrupt run file"
        super().__init__(f"{what} {path}: {why}")
        self.path = path
        self.run_id = run_id


class CorruptLedgerError(AbstractRTError):
    code = "corrupt_ledger"

    def __init__(self, path: str, line: int, why: str) -> None:
        super().__init__(f"corrupt ledger {path}, line {line}: {why}")
        self.path = path
        self.line = line


class LedgerVerifyError(AbstractRTError):
    code = "ledger_verify_failed"

    def __init__(self, run_id: str, report: dict) -> None:
        super().__init__(f"ledger of run {run_id} failed verification: {report.get('message')}")
        self.run_id = run_id
        self.report = report


class SnapshotMismatchError(LedgerVerifyError):
    """A snapshot whose ledger head is not the source run's record at that point."""

    code = "snapshot_mismatch"

    def __init__(self, run_id: str, name: str, seq: int) -> None:
        AbstractRTError.__init__(
            self, f"snapshot {name!r} of run {run_id} does not match the run's ledger at "
                  f"record {seq} (the snapshot or the ledger was changed)")
        self.run_id = run_id
        self.name = name
        self.report = {"ok": False, "first_bad_index": seq}


class LimitsError(AbstractRTError, ValueError):
    """An unknown limit key or a value of the wrong type."""

    code = "invalid_limits"


class RunBusyError(AbstractRTError, TimeoutError):
    code = "run_busy"

    exit_code = EXIT_BUSY

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} is busy in another process")
        self.run_id = run_id


class AnswerScriptError(AbstractRTError):
    """A scripted answers file is malformed."""

    code = "invalid_answer_script"


class InternalError(AbstractRTError):
    """A bug: an exception that is not an AbstractRTError reached the command line."""

    code = "internal"

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"internal error: {type(exc).__name__}: {exc}",
                         hint="set ABSTRACTRT_DEBUG=1 for a traceback")


class InterruptedByUser(AbstractRTError):
    """Ctrl-C."""

    code = "interrupted"
    exit_code = EXIT_INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted")


class ConfigError(AbstractRTError):
    """A settings file or value is wrong (exit 2: it is how the command was called)."""

    exit_code = EXIT_USAGE
    code = "invalid_config"


class LedgerMismatchError(AbstractRTError):
    """The ledger no longer holds the records the run's checkpoint says it has.

    Raised before anything is appended, so a damaged tail is never laundered by the next
    step onto a shortened chain.
    """

    code = "ledger_mismatch"

    def __init__(self, run_id: str, why: str) -> None:
        super().__init__(f"ledger of run {run_id} does not match its checkpoint: {why}")
        self.run_id = run_id


class ActorNotAllowedError(AbstractRTError, PermissionError):
    """Someone not in a prompt's ``allowed_actors`` tried to answer it."""

    code = "actor_not_allowed"

    def __init__(self, run_id: str, actor: Optional[str], allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        super().__init__(f"{actor or 'an unknown actor'} may not answer run {run_id}: only "
                         + ", ".join(allowed) + " may")
        self.run_id = run_id
        self.actor = actor
        self.allowed = allowed


class SchemaError(PayloadError):
    """A payload does not validate against the wait's JSON Schema."""

    code = "schema_mismatch"

    def __init__(self, run_id: str, path: str, why: str) -> None:
        super().__init__(f"payload for run {run_id} does not match its schema at {path}: {why}")
        self.run_id = run_id
        self.path = path


class StateNotSavableError(AbstractRTError, TypeError):
    """A run's state cannot be stored (a value in ``run.vars`` is not JSON)."""

    code = "state_not_savable"

    def __init__(self, run_id: str, why: str) -> None:
        super().__init__(f"run {run_id}: its state cannot be saved: {why}")
        self.run_id = run_id


class StepTimeoutError(AbstractRTError, TimeoutError):
    """A node or an effect handler ran past the step time limit."""

    code = "step_timeout"

    def __init__(self, run_id: str, node_id: str, seconds: float) -> None:
        super().__init__(f"run {run_id}: node {node_id!r} ran past the step time limit "
                         f"({seconds:g} s)")
        self.run_id = run_id
        self.node_id = node_id
        self.seconds = seconds


class StoreIOError(AbstractRTError, OSError):
    """The environment refused a store operation (permission, read-only, disk full...)."""

    code = "store_io"

    def __init__(self, path: str, why: str, *, code: Optional[str] = None) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        if code:
            self.code = code


class WorkflowAlreadyRegisteredError(AbstractRTError, ValueError):
    code = "workflow_already_registered"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} is already registered (unregister it "
                         "first, or register(..., replace=True))")
        self.workflow_id = workflow_id


class SnapshotExistsError(AbstractRTError):
    code = "snapshot_exists"

    def __init__(self, run_id: str, name: str) -> None:
        super().__init__(f"run {run_id} has a snapshot named {name!r} already")
        self.run_id = run_id
        self.name = name


class SnapshotNotFoundError(AbstractRTError, KeyError):
    code = "snapshot_not_found"

    def __init__(self, run_id: str, name: str) -> None:
        super().__init__(f"run {run_id} has no snapshot named {name!r}")
        self.run_id = run_id
        self.name = name


class ArtifactNotFoundError(AbstractRTError, KeyError):
    code = "artifact_not_found"

    def __init__(self, ref: str) -> None:
        super().__init__(f"no such artifact: {ref}")
        self.ref = ref


class BundleError(AbstractRTError):
    """An export bundle that cannot be imported (malformed, tampered, conflicting)."""

    code = "invalid_bundle"


class RunNotFailedError(AbstractRTError):
    code = "run_not_failed"

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} has not failed (status: {status}): only a failed run "
                         "can be retried")
        self.run_id = run_id
        self.status = status


class UnknownNodeError(AbstractRTError, KeyError):
    code = "node_not_found"

    def __init__(self, workflow_id: str, node_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} has no node {node_id!r}")
        self.workflow_id = workflow_id
        self.node_id = node_id


class LedgerSeqError(AbstractRTError):
    code = "seq_not_found"

    def __init__(self, run_id: str, seq: int, count: int, *, why: Optional[str] = None) -> None:
        super().__init__(f"run {run_id}: " + (why or f"no ledger record {seq} (it has "
                                                     f"{count}: 0-{max(count - 1, 0)})"))
        self.run_id = run_id
        self.seq = seq


class StoreCapabilityError(AbstractRTError):
    """The store in use cannot do what was asked (it says so instead of doing nothing)."""

    code = "not_supported"


class SymlinkRefusedError(AbstractRTError):
    """A data-dir file is a symbolic link: never followed (it could point anywhere)."""

    code = "symlink_refused"

    def __init__(self, path: str) -> None:
        super().__init__(f"refusing to follow the symbolic link {path} in the data dir")
        self.path = path


class DataDirVersionError(AbstractRTError):
    """The data dir (or database schema) was written by a newer abstractrt."""

    code = "store_too_new"

    def __init__(self, where: str, found: int, known: int) -> None:
        super().__init__(f"{where} has format version {found}; this abstractrt knows "
                         f"versions up to {known}")
        self.found = found
        self.known = known


class StoreUnavailableError(AbstractRTError):
    """A store cannot be opened: driver missing, server unreachable, bad credentials."""

    code = "store_unavailable"


class SignatureError(AbstractRTError):
    """A signing key is malformed or cannot be read or created."""

    code = "signing_key"


def all_error_classes() -> list:
    """Every AbstractRTError subclass defined here (the README documents their codes)."""
    out, todo = [], [AbstractRTError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out
