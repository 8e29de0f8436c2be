"""One exception tree for abstractrt: every error knows its exit code and message.

Exit codes (PRODUCT.md §4): 1 the command could not do what was asked, 2 wrong usage,
3 the run ended failed (not an exception), 4 the run is busy in another process.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional


class AbstractRTError(Exception):
    """Root of every error abstractrt raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return self.message

    def with_hint(self, hint: str) -> "AbstractRTError":
        self.hint = hint
        return self


class UsageError(AbstractRTError):
    """The command was called wrongly (exit 2)."""

    exit_code = 2


class UnknownRunError(AbstractRTError, KeyError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no such run: {run_id}", hint="list runs with `abstractrt runs`")
        self.run_id = run_id


class NoWaiterError(AbstractRTError):
    def __init__(self, wait_key: str) -> None:
        super().__init__(f"no run is waiting on key {wait_key!r}",
                         hint="see `abstractrt waiting` for the keys runs wait on")
        self.wait_key = wait_key


class AmbiguousRunError(AbstractRTError, KeyError):
    def __init__(self, prefix: str, candidates: Iterable[str]) -> None:
        cands = sorted(candidates)
        shown = ", ".join(cands[:10]) + (" …" if len(cands) > 10 else "")
        super().__init__(f"run prefix {prefix!r} is ambiguous: matches {shown}")
        self.prefix = prefix
        self.candidates = cands


class InvalidRunIdError(AbstractRTError, ValueError):
    def __init__(self, run_id: str, why: str = "") -> None:
        super().__init__(f"invalid run id {run_id!r}" + (f": {why}" if why else ""))
        self.run_id = run_id


class UnknownWorkflowError(AbstractRTError, KeyError):
    def __init__(self, workflow_id: str, known: Iterable[str] = (), *,
                 directory: Optional[str] = None) -> None:
        known = sorted(known)
        where = f" (workflows directory {directory} does not exist)" if directory else ""
        hint = ("known workflows: " + ", ".join(known)) if known else None
        super().__init__(f"no such workflow: {workflow_id}{where}", hint=hint)
        self.workflow_id = workflow_id


class WorkflowLoadError(AbstractRTError):
    """A workflow file failed to import, or its workflow cannot be used."""

    def __init__(self, message: str, *, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path


class DuplicateWorkflowError(AbstractRTError):
    def __init__(self, workflow_id: str, first: str, second: str) -> None:
        super().__init__(f"workflow {workflow_id!r} is defined twice: in {first} and in {second}")
        self.workflow_id = workflow_id
        self.paths = (first, second)


class RunNotWaitingError(AbstractRTError):
    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is not waiting (status: {status})")
        self.run_id = run_id
        self.status = status


class PromptMovedOnError(AbstractRTError):
    """The wait someone answered was answered elsewhere; the run has moved on."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has moved on: that prompt was answered elsewhere")
        self.run_id = run_id


class WaitKeyMismatchError(AbstractRTError):
    def __init__(self, run_id: str, expected: Optional[str], given: str) -> None:
        super().__init__(f"run {run_id} waits on key {expected!r}, not {given!r}")
        self.run_id = run_id
        self.expected = expected
        self.given = given


class InvalidChoiceError(AbstractRTError, ValueError):
    def __init__(self, run_id: str, answer: Any, choices: Iterable[str]) -> None:
        choices = list(choices)
        super().__init__(
            f"invalid answer {answer!r} for run {run_id}: must be one of "
            + ", ".join(repr(c) for c in choices)
        )
        self.run_id = run_id
        self.answer = answer
        self.choices = choices


class PayloadError(AbstractRTError, ValueError):
    """A payload or vars document is not what it must be (a JSON object)."""


class InputFileError(AbstractRTError, OSError):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"cannot read {path}: {why}")
        self.path = path


class CorruptRunError(AbstractRTError):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"corrupt run file {path}: {why}")
        self.path = path


class CorruptLedgerError(AbstractRTError):
    def __init__(self, path: str, line: int, why: str) -> None:
        super().__init__(f"corrupt ledger {path}, line {line}: {why}")
        self.path = path
        self.line = line


class LedgerVerifyError(AbstractRTError):
    def __init__(self, run_id: str, report: dict) -> None:
        super().__init__(f"ledger of run {run_id} failed verification: {report.get('message')}")
        self.run_id = run_id
        self.report = report


class LimitsError(AbstractRTError, ValueError):
    """An unknown limit key or a value of the wrong type."""


class RunBusyError(AbstractRTError, TimeoutError):
    exit_code = 4

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id} is busy in another process", hint="try again later"
        )
        self.run_id = run_id


class AnswerScriptError(AbstractRTError):
    """A scripted answers file is malformed."""
