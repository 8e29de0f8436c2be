"""Answering people's prompts: scripted rules files, and the interactive session.

Both drivers answer through the kernel's one rule for choices
(``core.answers.match_choice``, PRODUCT.md §4a): an answer matches a choice exactly, or
case-insensitively when exactly one choice matches, and is stored as the choice is
written. Interactively, a menu number picks a choice too.

PRODUCT §8: a prompt whose ``allowed_actors`` leave the acting actor out is skipped, and
said so; a payload is checked against the wait's JSON Schema by the kernel; a prompt
with an object schema is asked field by field (``form_fields``); ``rehearse`` says what
a rules file would answer now, changing nothing.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set

from ..core.answers import match_choice
from ..core.models import RunState, RunStatus, WaitReason
from ..errors import (
    AbstractRTError,
    ActorNotAllowedError,
    AnswerScriptError,
    InvalidChoiceError,
    MenuNumberError,
    NoPromptError,
    PayloadError,
    PromptMovedOnError,
    RunNotWaitingError,
    WaitKeyMismatchError,
)
from .session import Outcome, Session, hinted, waiting_since


def no_prompt(run: RunState) -> NoPromptError:
    w = run.waiting
    if run.status == RunStatus.WAITING and w is not None:
        what = {"event": "an event", "until": "a time", "job": "a job done elsewhere",
                "subworkflow": "a child run"}.get(w.reason.value, w.reason.value)
        why = f"it waits for {what}" + (f" (wait key {w.wait_key})" if w.wait_key else "")
    else:
        why = f"status: {run.status.value}"
    return NoPromptError(run.run_id, run.status.value, why)


# ---------------------------------------------------------------------------- rules files


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
    from ..errors import PayloadError
    from ..payloads import parse_document, read_text

    source = "standard input" if path == "-" else path
    try:
        text = read_text(path, what="answers")
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

    try:  # the document was already read within the bounds of payloads.yaml_load
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
    # Prompts a rule matched that the acting actor may not answer (allowed_actors).
    skipped: List[Dict[str, Any]] = field(default_factory=list)

    def to_jsonable(self) -> Dict[str, Any]:
        return {"answered": self.answered, "errors": self.errors, "unmatched": self.unmatched,
                "skipped": self.skipped, "warnings": self.warnings}


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
    """Waiting ``ask_user`` runs, the longest-waiting first (within a run and its descendants)."""
    runs = s.run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER)
    scope = _scope(s, scope_run_id)
    if scope is not None:
        runs = [r for r in runs if r.run_id in scope]
    runs.sort(key=lambda r: (waiting_since(r), r.run_id))
    return runs


def _prompts_of(s: Session, ref: Optional[str]) -> Optional[str]:
    """The run named (its full id) after checking it, or a child, waits for a person."""
    if ref is None:
        return None
    run = s.load_run(ref)
    if not pending_prompts(s, scope_run_id=run.run_id):
        raise no_prompt(run)
    return run.run_id


@hinted
def answer_script(s: Session, rules: List[AnswerRule], *, run_ref: Optional[str] = None,
                  max_steps: int = 100) -> AnswerReport:
    """``answer --script FILE [--run RUN]``."""
    scope = _prompts_of(s, run_ref)
    return answer_with_rules(s, rules, scope_run_id=scope, max_steps=max_steps)


def answer_with_rules(s: Session, rules: List[AnswerRule], *, scope_run_id: Optional[str] = None,
                      max_steps: int = 100) -> AnswerReport:
    """Answer matching prompts again and again until no rule matches a new prompt."""
    report = AnswerReport()
    rt = s.runtime()
    tried: Set[tuple] = set()
    actor = s.actor()
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
                for warning in s.workflow_warnings(run):
                    if warning not in report.warnings:
                        report.warnings.append(warning)
                payload = dict(rule.payload)
                if isinstance(payload.get("response"), str):
                    payload["response"] = match_choice(w, payload["response"], run_id=run.run_id)
                after = rt.resume(run_id=run.run_id, payload=payload,
                                  wait_key=w.wait_key, max_steps=max_steps, actor_id=actor,
                                  expect_step=run.effect_seq)
            except (RunNotWaitingError, PromptMovedOnError, WaitKeyMismatchError):
                continue  # answered elsewhere meanwhile: the next pass sees the new prompt
            except ActorNotAllowedError as exc:
                # Someone else's prompt: not an error of the script (nothing changed).
                report.skipped.append({"run_id": run.run_id, "prompt": w.prompt,
                                       "wait_key": w.wait_key, "rule": rule.index + 1,
                                       "why": str(exc)})
                continue
            except AbstractRTError as exc:
                report.errors.append(f"run {run.run_id[:8]}, prompt {w.prompt!r}: {exc}")
                continue
            progressed = True
            report.answered.append({"run_id": run.run_id, "prompt": w.prompt,
                                    "wait_key": w.wait_key, "payload": payload,
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


# ---------------------------------------------------------------------------- rehearsal


@dataclass
class Rehearsal:
    """What ``answer --script FILE --dry-run`` found: the answers a rule would give now,
    the prompts the actor may not answer, the answers that would be refused."""

    answers: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, Any]] = field(default_factory=list)
    refused: List[str] = field(default_factory=list)
    unmatched: List[Dict[str, Any]] = field(default_factory=list)
    rules: Dict[int, str] = field(default_factory=dict)  # rule number -> its description


@hinted
def rehearse(s: Session, rules: List[AnswerRule], *, run_ref: Optional[str] = None) -> Rehearsal:
    """For each prompt waiting now that a rule matches: the run, the prompt, the rule and
    the payload it would be answered with (choices matched, schema and actor checked by
    the kernel's ``check_resume``). Nothing is locked, resumed or written; prompts that
    answering would bring about later are not known yet, so not listed."""
    scope = _prompts_of(s, run_ref)
    rt = s.runtime()
    actor = s.actor()
    out = Rehearsal(rules={r.index + 1: r.describe() for r in rules})
    for run in pending_prompts(s, scope_run_id=scope):
        w = run.waiting
        assert w is not None
        rule = next((r for r in rules if r.matches(run)), None)
        if rule is None:
            out.unmatched.append({"run_id": run.run_id, "prompt": w.prompt, "wait_key": w.wait_key})
            continue
        try:
            payload = rt.check_resume(run, wait_key=w.wait_key, payload=dict(rule.payload),
                                      actor_id=actor)
        except ActorNotAllowedError as exc:
            out.skipped.append({"run_id": run.run_id, "prompt": w.prompt, "rule": rule.index + 1,
                                "why": str(exc)})
            continue
        except AbstractRTError as exc:
            out.refused.append(f"run {run.run_id[:8]}, prompt {w.prompt!r}, {rule.describe()}: {exc}")
            continue
        out.answers.append({"run_id": run.run_id, "prompt": w.prompt, "rule": rule.index + 1,
                            "payload": payload})
    return out


# ---------------------------------------------------------------------------- forms


class FieldValueError(ValueError):
    """What a person typed for one field of a form is not a value it takes (asked again)."""


_TRUE = {"y", "yes", "true", "t", "1", "on"}
_FALSE = {"n", "no", "false", "f", "0", "off"}
_INTEGER = re.compile(r"^[+-]?\d+$")


@dataclass
class FormField:
    """One property of an object schema, as interactive ``answer`` asks for it."""

    name: str
    schema: Dict[str, Any]
    index: int
    required: bool = False
    has_default: bool = False
    default: Any = None

    @property
    def types(self) -> List[str]:
        t = self.schema.get("type")
        types = [t] if isinstance(t, str) else [x for x in t if isinstance(x, str)] if isinstance(t, list) else []
        return [x for x in types if x != "null"] or types

    @property
    def enum(self) -> Optional[List[Any]]:
        if isinstance(self.schema.get("enum"), list) and self.schema["enum"]:
            return list(self.schema["enum"])
        if "const" in self.schema:
            return [self.schema["const"]]
        return None

    @property
    def description(self) -> Optional[str]:
        d = self.schema.get("description") or self.schema.get("title")
        return str(d) if d else None

    def kind(self) -> str:
        """What to type, for the prompt: ``number``, ``yes/no``, ``1-3 or the value``…"""
        if self.enum is not None:
            return f"1–{len(self.enum)} or the value" if len(self.enum) > 1 else "1 or the value"
        t = self.types[0] if self.types else None
        return {"integer": "whole number", "number": "number", "boolean": "yes/no",
                "string": "text", "array": "JSON array", "object": "JSON object"}.get(t or "", "value")

    def parse(self, text: str) -> Any:
        """The value typed, checked as its type says; FieldValueError says why not."""
        text = text.strip()
        enum = self.enum
        if enum is not None:
            if _INTEGER.match(text) and 1 <= int(text) <= len(enum) and not any(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in enum):
                return enum[int(text) - 1]
            exact = [v for v in enum if isinstance(v, str) and v == text]
            folded = [v for v in enum if isinstance(v, str) and v.casefold() == text.casefold()]
            if exact or len(folded) == 1:
                return (exact or folded)[0]
            typed = _json_or_none(text)
            if typed is not _NOTHING and any(typed == v and type(typed) is type(v) for v in enum):
                return typed
            if _INTEGER.match(text) and 1 <= int(text) <= len(enum):
                return enum[int(text) - 1]
            shown = ", ".join(json.dumps(v, ensure_ascii=False) for v in enum)
            raise FieldValueError(f"{self.name}: {text!r} is not one of {shown} "
                                  f"(pick 1–{len(enum)} or type the value)")
        problems = []
        kinds: List[Optional[str]] = list(self.types) or [None]
        for t in kinds:
            try:
                return _parse_as(t, text)
            except FieldValueError as exc:
                problems.append(str(exc))
        raise FieldValueError(f"{self.name}: " + "; or ".join(problems))


_NOTHING = object()


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOTHING


def _parse_as(t: Optional[str], text: str) -> Any:
    if t == "string":
        return text
    if t == "boolean":
        if text.casefold() in _TRUE:
            return True
        if text.casefold() in _FALSE:
            return False
        raise FieldValueError(f"expected yes or no, not {text!r}")
    if t == "integer":
        if _INTEGER.match(text):
            return int(text)
        raise FieldValueError(f"expected a whole number, not {text!r}")
    if t == "number":
        if _INTEGER.match(text):
            return int(text)
        try:
            value = float(text)
        except ValueError:
            raise FieldValueError(f"expected a number, not {text!r}") from None
        if not math.isfinite(value):
            raise FieldValueError(f"expected a finite number, not {text!r}")
        return value
    if t == "null":
        if text in ("", "null"):
            return None
        raise FieldValueError(f"expected null, not {text!r}")
    value = _json_or_none(text)
    if t == "array":
        if isinstance(value, list):
            return value
        raise FieldValueError(f"expected a JSON array like [1, 2], not {text!r}")
    if t == "object":
        if isinstance(value, dict):
            return value
        raise FieldValueError(f"expected a JSON object like {{\"a\": 1}}, not {text!r}")
    return text if value is _NOTHING else value  # no type: JSON if it reads as JSON, else text


def form_fields(schema: Optional[Dict[str, Any]]) -> List[FormField]:
    """The fields of an object schema in ``properties`` order (none for any other schema:
    such a prompt is answered as text, ``{"response": TEXT}``)."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return []
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return []
    required = set(schema.get("required") or [])
    out = []
    for i, (name, sub) in enumerate(props.items()):
        sub = sub if isinstance(sub, dict) else {}
        out.append(FormField(name=str(name), schema=sub, index=i, required=name in required,
                             has_default="default" in sub, default=sub.get("default")))
    return out


def check_field(schema: Dict[str, Any], f: FormField, value: Any) -> None:
    """The field's own constraints (``maximum``, ``minLength``, ``pattern``...) checked as
    soon as it is typed: the object with just this field, against the whole schema, keeps
    the errors under this field (so ``$ref`` and ``$defs`` work)."""
    from jsonschema import Draft202012Validator

    errors = [e for e in Draft202012Validator(schema).iter_errors({f.name: value})
              if list(e.absolute_path)[:1] == [f.name]]
    if errors:
        errors.sort(key=lambda e: (list(e.absolute_path), e.message))
        raise FieldValueError(f"{f.name}: {errors[0].message}")


def ask_form(run: RunState, fields: List[FormField],
             ask_field: Callable[[RunState, FormField, Optional[str]], str],
             error: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Ask each field in turn; the payload, or None when the person skipped the prompt (an
    empty answer to a required field that has no default). An empty answer takes the
    default, or leaves an optional field out. ``error`` (from a refused whole payload) is
    shown with the first field."""
    w = run.waiting
    assert w is not None and w.schema is not None
    values: Dict[str, Any] = {}
    for f in fields:
        while True:
            text = ask_field(run, f, error)
            error = None
            if not text.strip():
                if f.has_default:
                    values[f.name] = f.default
                elif f.required:
                    return None
                break
            try:
                value = f.parse(text)
                check_field(w.schema, f, value)
            except FieldValueError as exc:
                error = str(exc)
                continue
            values[f.name] = value
            break
    return values


# ---------------------------------------------------------------------------- interactive



def interpret_answer(run: RunState, text: str) -> Dict[str, Any]:
    """A typed answer → payload: a choice's number or text, or free text where allowed."""
    w = run.waiting
    assert w is not None
    text = text.strip()
    if w.choices:
        if text.isdigit():
            n = int(text)
            if 1 <= n <= len(w.choices):
                return {"response": w.choices[n - 1]}
            if not w.allow_free_text:
                raise MenuNumberError(run.run_id, text, list(w.choices))
        if text or not w.allow_free_text:
            return {"response": match_choice(w, text, run_id=run.run_id)}
    if not text:
        raise InvalidChoiceError(run.run_id, text, w.choices or ["a non-empty answer"])
    return {"response": text}


@dataclass
class InteractiveReport:
    """What an interactive session did: each prompt answered and each one skipped."""

    answered: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, Any]] = field(default_factory=list)
    outcomes: List[Outcome] = field(default_factory=list)
    ended_by_eof: bool = False


@hinted
def answer_interactively(
    s: Session,
    ask: Callable[[RunState, Optional[str]], Optional[str]],
    *,
    ask_field: Optional[Callable[[RunState, FormField, Optional[str]], str]] = None,
    scope_run_id: Optional[str] = None,
    run_ref: Optional[str] = None,
    max_steps: int = 100,
    on_notice: Optional[Callable[[str], None]] = None,
) -> InteractiveReport:
    """Walk the waiting prompts; ``ask(run, error)`` returns the typed text (None skips).

    A prompt with an object schema is asked field by field with ``ask_field(run, field,
    error)`` when it is given (``ask_form``). ``ask``/``ask_field`` raising ``EOFError``
    (Ctrl-D) ends the session: that prompt counts as skipped and nothing more is asked.
    An invalid answer (not a choice, not matching the schema) is asked again with the
    reason; a prompt the acting actor may not answer is skipped, with a notice; prompts
    that appear as a result of an answer (the next question of the same run) are walked
    too.
    """
    from ..core.waits import check_actor

    if run_ref is not None:
        scope_run_id = _prompts_of(s, run_ref)
    rt = s.runtime()
    actor = s.actor()
    report = InteractiveReport()
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
            return report
        # The next question of the run just answered comes next: a person answers one
        # conversation at a time rather than jumping between runs.
        last = report.outcomes[-1].run.run_id if report.outcomes else None
        run = next((r for r in queue if r.run_id == last), queue[0])
        w = run.waiting
        assert w is not None
        prompt = w.prompt
        try:
            check_actor(w, actor, run_id=run.run_id)
        except ActorNotAllowedError as exc:
            skipped.add((run.run_id, run.effect_seq))
            report.skipped.append({"run_id": run.run_id, "workflow_id": run.workflow_id,
                                   "prompt": prompt, "why": str(exc)})
            notices.append(f"skipped run {run.run_id[:8]} ({prompt!r}): {exc}")
            continue
        fields = form_fields(w.schema) if ask_field is not None else []
        error: Optional[str] = None
        while True:
            try:
                if fields:
                    assert ask_field is not None
                    payload = ask_form(run, fields, ask_field, error)
                else:
                    text = ask(run, error)
                    payload = None if text is None else interpret_answer(run, text)
            except EOFError:
                report.skipped.append({"run_id": run.run_id, "workflow_id": run.workflow_id,
                                       "prompt": prompt})
                report.ended_by_eof = True
                return report
            except InvalidChoiceError as exc:
                error = str(exc)
                continue
            if payload is None:
                skipped.add((run.run_id, run.effect_seq))
                report.skipped.append({"run_id": run.run_id, "workflow_id": run.workflow_id,
                                       "prompt": prompt})
                break
            try:
                warnings = s.workflow_warnings(run)
                after = rt.resume(run_id=run.run_id, payload=payload, wait_key=w.wait_key,
                                  max_steps=max_steps, actor_id=actor,
                                  expect_step=run.effect_seq)
            except (InvalidChoiceError, PayloadError) as exc:  # a SchemaError is a PayloadError
                error = str(exc)
                continue
            except (RunNotWaitingError, PromptMovedOnError, WaitKeyMismatchError):
                # Answered elsewhere while the person typed: never apply the answer to a
                # newer prompt; the outer loop shows what the run waits for now.
                notices.append(f"run {run.run_id[:8]}: that prompt was answered elsewhere; "
                               "your answer was not used")
                break
            report.outcomes.append(Outcome(after, warnings))
            report.answered.append({"run_id": run.run_id, "workflow_id": run.workflow_id,
                                    "prompt": prompt,
                                    "response": payload if fields else payload.get("response"),
                                    "status": after.status.value})
            break
