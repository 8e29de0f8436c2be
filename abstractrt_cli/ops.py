"""What each command does, as plain functions over the kernel and the file stores.

The CLI parses arguments, calls one of these, and renders what comes back. Nothing here
prints or exits; errors are ``AbstractRTError`` subclasses carrying their exit code.
Every operation validates everything it can *before* it writes, so a refused command
leaves the data dir as it was.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Dict, List, Optional, Set

from .core.config import LIMIT_KEYS, RuntimeConfig
from .core.models import RunState, RunStatus, WaitReason
from .core.runtime import Runtime
from .errors import (
    AbstractRTError,
    AmbiguousRunError,
    AnswerScriptError,
    CorruptLedgerError,
    CorruptRunError,
    InvalidChoiceError,
    LimitsError,
    NoWaiterError,
    PromptMovedOnError,
    RunBusyError,
    RunNotWaitingError,
    UnknownRunError,
    UnknownWorkflowError,
    WaitKeyMismatchError,
    WorkflowLoadError,
)
from .settings import Settings, current_actor

MIN_PREFIX = 6


@dataclass
class Outcome:
    """A run after an operation, with warnings for the person (printed on stderr)."""

    run: RunState
    warnings: List[str] = field(default_factory=list)


@dataclass
class TickAllSummary:
    considered: int = 0
    moved: int = 0
    completed: int = 0
    waiting: int = 0
    failed: int = 0
    running: int = 0
    skipped_busy: int = 0
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    moved_runs: List[Dict[str, str]] = field(default_factory=list)

    def to_jsonable(self) -> Dict[str, Any]:
        return {
            "considered": self.considered, "moved": self.moved, "completed": self.completed,
            "waiting": self.waiting, "failed": self.failed, "running": self.running,
            "skipped_busy": self.skipped_busy, "errors": self.errors, "runs": self.moved_runs,
        }


class Session:
    """One command's view of the world: settings, stores, and (lazily) the workflows."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    #: Set by the operations that create runs: only they may create the data dir.
    creates_runs = False

    @cached_property
    def stores(self) -> Any:
        if not self.creates_runs and not self.settings.data_dir.exists():
            # Nothing stored yet: read from empty stores rather than create the data dir,
            # so a query, or a refused command, leaves the disk exactly as it was.
            from .storage.memory import InMemoryLedgerStore, InMemoryRunStore

            return InMemoryRunStore(), InMemoryLedgerStore()
        from .storage.files import open_file_stores

        return open_file_stores(self.settings.data_dir)

    @property
    def run_store(self) -> Any:
        return self.stores[0]

    @property
    def ledger_store(self) -> Any:
        return self.stores[1]

    @cached_property
    def workflows(self) -> Any:
        from .loader import load_workflows

        return load_workflows(self.settings.workflows_dir)

    def runtime(self, *, lock_timeout: Optional[float] = None) -> Runtime:
        config = RuntimeConfig() if lock_timeout is None else RuntimeConfig(lock_timeout=lock_timeout)
        return Runtime(run_store=self.run_store, ledger_store=self.ledger_store,
                       workflow_registry=self.workflows.registry, config=config)

    # -- naming runs

    def load_run(self, ref: str) -> RunState:
        """A run by full id or unique prefix of 6+ characters."""
        from .storage.files import validate_run_id

        ref = validate_run_id(ref.strip())
        run = self.run_store.load(ref)
        if run is not None:
            return run
        if len(ref) < MIN_PREFIX:
            raise UnknownRunError(ref).with_hint(
                f"a run id prefix needs at least {MIN_PREFIX} characters")
        matches = self.run_store.match_prefix(ref, limit=11)
        if not matches:
            raise UnknownRunError(ref)
        if len(matches) > 1:
            raise AmbiguousRunError(ref, matches)
        run = self.run_store.load(matches[0])
        if run is None:  # deleted between the two reads
            raise UnknownRunError(ref)
        return run

    def _workflow_warnings(self, run: RunState) -> List[str]:
        """Checks a non-terminal run's workflow is loadable; warns when its code changed."""
        try:
            entry = self.workflows.entry(run.workflow_id)
        except UnknownWorkflowError:
            was = f" (it came from {run.workflow_source})" if run.workflow_source else ""
            raise WorkflowLoadError(
                f"run {run.run_id}'s workflow {run.workflow_id!r} is not in "
                f"{self.settings.workflows_dir}{was}; the run is left as it was") from None
        warnings = []
        if run.workflow_fingerprint and entry.fingerprint and run.workflow_fingerprint != entry.fingerprint:
            warnings.append(f"warning: workflow {run.workflow_id!r} changed since run "
                            f"{run.run_id[:8]} started ({entry.source})")
        return warnings


# ---------------------------------------------------------------------------- commands


def list_workflows(s: Session) -> List[Dict[str, Any]]:
    from .loader import describe

    return describe(s.workflows)


def start(s: Session, workflow_id: str, *, vars: Dict[str, Any], tick: bool = True,
          max_steps: int = 100, answers: Optional[List["AnswerRule"]] = None) -> "StartResult":
    entry = s.workflows.entry(workflow_id)
    s.creates_runs = True
    rt = s.runtime()
    run_id = rt.start(workflow=entry.spec, vars=vars, actor_id=current_actor())
    run = rt.tick(run_id=run_id, max_steps=max_steps) if tick else rt.get_state(run_id)
    report = None
    if answers is not None and tick:
        report = answer_with_rules(s, answers, scope_run_id=run_id, max_steps=max_steps)
        run = rt.get_state(run_id)
    return StartResult(run=run, answers=report)


@dataclass
class StartResult:
    run: RunState
    answers: Optional["AnswerReport"] = None


def tick(s: Session, ref: str, *, max_steps: int = 100) -> Outcome:
    run = s.load_run(ref)
    if run.status.is_terminal:
        return Outcome(run, [f"run {run.run_id[:8]} is {run.status.value}; nothing to do"])
    warnings = s._workflow_warnings(run)
    return Outcome(s.runtime().tick(run_id=run.run_id, max_steps=max_steps), warnings)


def tick_all(s: Session, *, max_steps: int = 100,
             on_progress: Optional[Callable[[int, int], None]] = None) -> TickAllSummary:
    """Progress every run that can move, skipping runs another process holds.

    Candidates: running runs, waiting runs whose ``until`` has come, and runs waiting
    on a child that has ended (a parent left behind by a crash or a busy lock).
    """
    summary = TickAllSummary()
    rs = s.run_store
    rt = s.runtime(lock_timeout=0)  # never wait for a busy run: a later cron tick gets it
    corrupt: List[CorruptRunError] = []
    candidates: Dict[str, RunState] = {}
    for run in rs.list_runs(status=RunStatus.RUNNING, on_corrupt=corrupt.append):
        candidates.setdefault(run.run_id, run)
    for run in rs.list_due_wait_until(now=rt.now(), on_corrupt=corrupt.append):
        candidates.setdefault(run.run_id, run)
    for run in rs.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.SUBWORKFLOW,
                            on_corrupt=corrupt.append):
        child_id = ((run.waiting.details or {}) if run.waiting else {}).get("sub_run_id")
        child = _load_quietly(rs, child_id)
        if child is not None and child.status.is_terminal:
            candidates.setdefault(run.run_id, run)
    summary.errors.extend(str(e) for e in corrupt)
    total = len(candidates)
    summary.considered = total
    seen_warnings: Set[str] = set()
    for i, (run_id, before) in enumerate(candidates.items()):
        if on_progress:
            on_progress(i, total)
        try:
            for w in s._workflow_warnings(before):
                if w not in seen_warnings:
                    seen_warnings.add(w)
                    summary.warnings.append(w)
            after = rt.tick(run_id=run_id, max_steps=max_steps)
        except RunBusyError:
            summary.skipped_busy += 1
            continue
        except AbstractRTError as exc:
            summary.errors.append(f"run {run_id}: {exc}")
            continue
        if (after.status, after.updated_at) == (before.status, before.updated_at):
            continue
        summary.moved += 1
        summary.moved_runs.append({"run_id": run_id, "status": after.status.value})
        if after.status == RunStatus.COMPLETED:
            summary.completed += 1
        elif after.status == RunStatus.WAITING:
            summary.waiting += 1
        elif after.status == RunStatus.FAILED:
            summary.failed += 1
        elif after.status == RunStatus.RUNNING:
            summary.running += 1
    if on_progress:
        on_progress(total, total)
    return summary


def _load_quietly(rs: Any, run_id: Optional[str]) -> Optional[RunState]:
    if not run_id:
        return None
    try:
        return rs.load(run_id)
    except AbstractRTError:
        return None


def resume(s: Session, ref: str, payload: Dict[str, Any], *, wait_key: Optional[str] = None,
           max_steps: int = 100) -> Outcome:
    run = s.load_run(ref)
    rt = s.runtime()
    rt.check_resume(run, wait_key=wait_key, payload=payload)  # precise refusal, nothing loaded
    warnings = s._workflow_warnings(run)
    after = rt.resume(run_id=run.run_id, payload=payload, wait_key=wait_key,
                      max_steps=max_steps, actor_id=current_actor())
    return Outcome(after, warnings)


@dataclass
class EmitResult:
    key: str
    runs: List[RunState] = field(default_factory=list)
    busy: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def emit(s: Session, key: str, payload: Dict[str, Any], *, max_steps: int = 100) -> EmitResult:
    """Resume every run waiting on ``key``; all are validated before any is resumed."""
    rs = s.run_store
    waiting = rs.list_runs(status=RunStatus.WAITING, wait_key=key)
    if not waiting:
        raise NoWaiterError(key)
    rt = s.runtime()
    result = EmitResult(key=key)
    for run in waiting:
        rt.check_resume(run, wait_key=key, payload=payload)
        result.warnings.extend(s._workflow_warnings(run))
    for run in sorted(waiting, key=lambda r: r.created_at):
        try:
            result.runs.append(rt.resume(run_id=run.run_id, payload=dict(payload), wait_key=key,
                                         max_steps=max_steps, actor_id=current_actor()))
        except RunBusyError:
            result.busy.append(run.run_id)
        except RunNotWaitingError:
            continue  # another process resumed it between our query and our lock
    return result


def waiting(s: Session, *, workflow_id: Optional[str] = None,
            reason: Optional[WaitReason] = None) -> List[RunState]:
    runs = s.run_store.list_runs(status=RunStatus.WAITING, workflow_id=workflow_id,
                                 wait_reason=reason)
    runs.sort(key=lambda r: r.updated_at)
    for run in runs:
        _refresh_child_wait(s, run)
    return runs


def _refresh_child_wait(s: Session, run: RunState) -> None:
    """Show what a parent's child waits for *now* (the parent recorded its first wait)."""
    w = run.waiting
    if w is None or w.reason != WaitReason.SUBWORKFLOW or not w.details:
        return
    child = _load_quietly(s.run_store, w.details.get("sub_run_id"))
    if child is None:
        return
    cw = child.waiting
    w.details["sub_status"] = child.status.value
    w.details["sub_waiting"] = ({"reason": cw.reason.value, "wait_key": cw.wait_key,
                                 "prompt": cw.prompt} if cw else None)


@dataclass
class RunsListing:
    runs: List[RunState]
    corrupt: List[CorruptRunError]


def list_runs(s: Session, *, status: Optional[RunStatus] = None, workflow_id: Optional[str] = None,
              limit: Optional[int] = None) -> RunsListing:
    corrupt: List[CorruptRunError] = []
    runs = s.run_store.list_runs(status=status, workflow_id=workflow_id, limit=limit,
                                 on_corrupt=corrupt.append)
    return RunsListing(runs, corrupt)


def show(s: Session, ref: str) -> Dict[str, Any]:
    run = s.load_run(ref)
    rt = s.runtime()
    children = s.run_store.list_children(parent_run_id=run.run_id)
    return {
        "run": run,
        "children": children,
        "limits": rt.get_limit_status(run.run_id) if "_limits" in run.vars else None,
    }


def ledger(s: Session, ref: str) -> Dict[str, Any]:
    run = s.load_run(ref)
    return {"run": run, "records": s.ledger_store.list(run.run_id)}


def verify(s: Session, ref: str) -> Dict[str, Any]:
    """Check a run's hash chain against itself and the run's checkpoint."""
    from .storage.chain import verify_ledger_chain

    run = s.load_run(ref)
    try:
        records = s.ledger_store.list(run.run_id)
    except CorruptLedgerError as exc:
        return {"ok": False, "count": None, "first_bad_index": exc.line - 1,
                "first_bad_step_id": None, "errors": [{"type": "unparsable_line",
                                                       "index": exc.line - 1}],
                "head_hash": None, "message": str(exc), "run_id": run.run_id}
    report = verify_ledger_chain(records, expected_count=run.ledger_count,
                                 expected_head=run.ledger_head)
    report["run_id"] = run.run_id
    return report


def reindex(s: Session) -> Dict[str, Any]:
    """Rebuild the query index from the run files (reads every run: for recovery only)."""
    if not s.settings.data_dir.exists():
        return {"runs": 0, "corrupt": 0, "removed": 0, "seconds": 0.0}
    return s.run_store.rebuild_index()


def cancel(s: Session, ref: str, *, reason: Optional[str] = None) -> Outcome:
    run = s.load_run(ref)
    if run.status.is_terminal:
        return Outcome(run, [f"run {run.run_id[:8]} is already {run.status.value}; left as it is"])
    after = s.runtime().cancel_run(run.run_id, reason=reason, actor_id=current_actor())
    return Outcome(after)


def limits(s: Session, ref: str, updates: Dict[str, Any]) -> Dict[str, Any]:
    run = s.load_run(ref)
    rt = s.runtime()
    if updates:
        for key, value in updates.items():
            if key in LIMIT_KEYS and isinstance(value, str):
                raise LimitsError(f"limit {key!r} must be an integer, not {value!r}")
        run = rt.update_limits(run.run_id, updates, actor_id=current_actor())
    return {"run_id": run.run_id, "limits": run.vars.get("_limits") or {},
            "status": rt.get_limit_status(run.run_id)}


# ---------------------------------------------------------------------------- answers


@dataclass
class AnswerRule:
    """One rule of a scripted answers file; every matcher given must match."""

    index: int
    prompt: Optional[str] = None
    prompt_regex: Optional[re.Pattern] = None
    wait_key: Optional[str] = None
    payload: Dict[str, Any] = field(default_factory=dict)

    def matches(self, run: RunState) -> bool:
        w = run.waiting
        if w is None:
            return False
        text = w.prompt or ""
        if self.prompt is not None and self.prompt not in text:
            return False
        if self.prompt_regex is not None and not self.prompt_regex.search(text):
            return False
        if self.wait_key is not None and not fnmatch.fnmatchcase(w.wait_key or "", self.wait_key):
            return False
        return True

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("prompt", self.prompt),
                                          ("prompt_regex", self.prompt_regex and self.prompt_regex.pattern),
                                          ("wait_key", self.wait_key)) if v is not None]
        return f"rule {self.index + 1} ({', '.join(parts)})"


_RULE_KEYS = {"prompt", "prompt_regex", "wait_key", "answer", "payload"}


def parse_answer_rules(data: Any, *, source: str) -> List[AnswerRule]:
    """Validate a whole rules document before anything is answered."""
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        data = data["rules"]
    if not isinstance(data, list) or not data:
        raise AnswerScriptError(f"answers file {source} must be a non-empty list of rules")
    rules = []
    for i, item in enumerate(data):
        where = f"answers file {source}, rule {i + 1}"
        if not isinstance(item, dict):
            raise AnswerScriptError(f"{where}: must be a mapping, not {type(item).__name__}")
        unknown = sorted(set(map(str, item)) - _RULE_KEYS)
        if unknown:
            raise AnswerScriptError(f"{where}: unknown key(s) {', '.join(unknown)} "
                                    f"(known: {', '.join(sorted(_RULE_KEYS))})")
        matchers = [k for k in ("prompt", "prompt_regex", "wait_key") if k in item]
        if not matchers:
            raise AnswerScriptError(f"{where}: needs one of prompt, prompt_regex, wait_key")
        for k in matchers:
            if not isinstance(item[k], str) or not item[k]:
                raise AnswerScriptError(f"{where}: {k} must be a non-empty string")
        if ("answer" in item) == ("payload" in item):
            raise AnswerScriptError(f"{where}: needs exactly one of answer, payload")
        if "answer" in item:
            ans = item["answer"]
            if isinstance(ans, (dict, list)) or ans is None:
                raise AnswerScriptError(f"{where}: answer must be text (use payload for objects)")
            if isinstance(ans, bool):
                ans = "true" if ans else "false"
            payload = {"response": str(ans)}
        else:
            if not isinstance(item["payload"], dict):
                raise AnswerScriptError(f"{where}: payload must be a mapping")
            payload = item["payload"]
        regex = None
        if "prompt_regex" in item:
            try:
                regex = re.compile(item["prompt_regex"])
            except re.error as exc:
                raise AnswerScriptError(f"{where}: prompt_regex is not a valid regex: {exc}") from None
        rules.append(AnswerRule(index=i, prompt=item.get("prompt"), prompt_regex=regex,
                                wait_key=item.get("wait_key"), payload=payload))
    return rules


def load_answer_rules(path: str) -> List[AnswerRule]:
    from .errors import PayloadError
    from .payloads import parse_document, read_text

    source = "standard input" if path == "-" else path
    text = read_text(path)
    try:
        data = parse_document(text, source=source, what="answers")
    except PayloadError as exc:
        raise AnswerScriptError(str(exc)) from None
    _keep_answer_text(text, data)
    return parse_answer_rules(data, source=source)


_NUMERIC_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")


def _keep_answer_text(text: str, data: Any) -> None:
    """An ``answer`` written as a plain YAML number or boolean (``007``, ``1.10``, ``True``)
    means that text, exactly as written."""
    if not isinstance(data, list):
        return
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # JSON that YAML cannot read: JSON values are already exact
    if not isinstance(root, yaml.SequenceNode) or len(root.value) != len(data):
        return
    for item, node in zip(data, root.value, strict=True):
        if not isinstance(item, dict) or not isinstance(node, yaml.MappingNode):
            continue
        for key, value in node.value:
            if (getattr(key, "value", None) == "answer" and isinstance(value, yaml.ScalarNode)
                    and value.tag in _NUMERIC_TAGS
                    and not value.style and isinstance(item.get("answer"), (int, float))):
                item["answer"] = value.value


@dataclass
class AnswerReport:
    answered: List[Dict[str, Any]] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    unmatched: List[Dict[str, Any]] = field(default_factory=list)
    failed_runs: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def to_jsonable(self) -> Dict[str, Any]:
        return {"answered": self.answered, "errors": self.errors, "unmatched": self.unmatched,
                "warnings": self.warnings}


MAX_SCRIPTED_ANSWERS = 1000


def _scope(s: Session, root_id: Optional[str]) -> Optional[Set[str]]:
    """The run and all its descendants (children it started, theirs, …)."""
    if root_id is None:
        return None
    seen, todo = {root_id}, [root_id]
    while todo:
        for child in s.run_store.list_children(parent_run_id=todo.pop()):
            if child.run_id not in seen:
                seen.add(child.run_id)
                todo.append(child.run_id)
    return seen


def pending_prompts(s: Session, *, scope_run_id: Optional[str] = None) -> List[RunState]:
    """Waiting ``ask_user`` runs, oldest first (limited to a run and its descendants)."""
    runs = s.run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER)
    scope = _scope(s, scope_run_id)
    if scope is not None:
        runs = [r for r in runs if r.run_id in scope]
    runs.sort(key=lambda r: (r.updated_at, r.run_id))
    return runs


def answer_with_rules(s: Session, rules: List[AnswerRule], *, scope_run_id: Optional[str] = None,
                      max_steps: int = 100) -> AnswerReport:
    """Answer matching prompts again and again until no rule matches a new prompt."""
    report = AnswerReport()
    rt = s.runtime()
    tried: Set[tuple] = set()
    actor = current_actor()
    while len(report.answered) < MAX_SCRIPTED_ANSWERS:
        progressed = False
        for run in pending_prompts(s, scope_run_id=scope_run_id):
            w = run.waiting
            assert w is not None
            token = (run.run_id, run.effect_seq, w.wait_key)
            rule = next((r for r in rules if r.matches(run)), None)
            if rule is None or token in tried:
                continue
            tried.add(token)
            try:
                for warning in s._workflow_warnings(run):
                    if warning not in report.warnings:
                        report.warnings.append(warning)
                after = rt.resume(run_id=run.run_id, payload=dict(rule.payload),
                                  wait_key=w.wait_key, max_steps=max_steps, actor_id=actor,
                                  expect_step=run.effect_seq)
            except (RunNotWaitingError, PromptMovedOnError, WaitKeyMismatchError):
                continue  # answered elsewhere meanwhile: the next pass sees the new prompt
            except AbstractRTError as exc:
                report.errors.append(f"run {run.run_id[:8]}, prompt {w.prompt!r}: {exc}")
                continue
            progressed = True
            report.answered.append({"run_id": run.run_id, "prompt": w.prompt,
                                    "wait_key": w.wait_key, "payload": rule.payload,
                                    "rule": rule.index + 1, "status": after.status.value})
            if after.status == RunStatus.FAILED:
                report.failed_runs.append(after.run_id)
        if not progressed:
            break
    else:
        report.errors.append(f"stopped after {MAX_SCRIPTED_ANSWERS} answers: a rule may be "
                             "answering a loop forever")
    for run in pending_prompts(s, scope_run_id=scope_run_id):
        w = run.waiting
        if w is None or (run.run_id, run.effect_seq, w.wait_key) in tried:
            continue  # a rule matched but its answer was refused: reported in errors
        report.unmatched.append({"run_id": run.run_id, "prompt": w.prompt if w else None,
                                 "wait_key": w.wait_key if w else None})
    return report


def interpret_answer(run: RunState, text: str) -> Dict[str, Any]:
    """A typed answer → payload: a choice's number or text, or free text where allowed."""
    w = run.waiting
    assert w is not None
    text = text.strip()
    if w.choices:
        if text.isdigit() and 1 <= int(text) <= len(w.choices):
            return {"response": w.choices[int(text) - 1]}
        for choice in w.choices:
            if text == choice or text.lower() == choice.lower():
                return {"response": choice}
        if not w.allow_free_text:
            raise InvalidChoiceError(run.run_id, text, w.choices)
    if not text:
        raise InvalidChoiceError(run.run_id, text, w.choices or ["a non-empty answer"])
    return {"response": text}


def answer_interactively(
    s: Session,
    ask: Callable[[RunState, Optional[str]], Optional[str]],
    *,
    scope_run_id: Optional[str] = None,
    max_steps: int = 100,
    on_notice: Optional[Callable[[str], None]] = None,
) -> List[Outcome]:
    """Walk the waiting prompts; ``ask(run, error)`` returns the typed text (None skips).

    An invalid answer is asked again with the reason; prompts that appear as a result of
    an answer (the next question of the same run) are walked too.
    """
    rt = s.runtime()
    done: List[Outcome] = []
    skipped: Set[tuple] = set()
    notices: List[str] = []
    while True:
        if notices and on_notice:
            for n in notices:
                on_notice(n)
            notices.clear()
        queue = [r for r in pending_prompts(s, scope_run_id=scope_run_id)
                 if (r.run_id, r.effect_seq) not in skipped]
        if not queue:
            return done
        # The next question of the run just answered comes next: a person answers one
        # conversation at a time rather than jumping between runs.
        last = done[-1].run.run_id if done else None
        run = next((r for r in queue if r.run_id == last), queue[0])
        error: Optional[str] = None
        while True:
            text = ask(run, error)
            if text is None:
                skipped.add((run.run_id, run.effect_seq))
                break
            try:
                payload = interpret_answer(run, text)
                warnings = s._workflow_warnings(run)
                after = rt.resume(run_id=run.run_id, payload=payload,
                                  wait_key=run.waiting.wait_key if run.waiting else None,
                                  max_steps=max_steps, actor_id=current_actor(),
                                  expect_step=run.effect_seq)
            except InvalidChoiceError as exc:
                error = str(exc)
                continue
            except (RunNotWaitingError, PromptMovedOnError, WaitKeyMismatchError):
                # Answered elsewhere while the person typed: never apply the answer to a
                # newer prompt; the outer loop shows what the run waits for now.
                notices.append(f"run {run.run_id[:8]}: that prompt was answered elsewhere; "
                               "your answer was not used")
                break
            done.append(Outcome(after, warnings))
            break
