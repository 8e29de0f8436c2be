"""Answering prompts without a person at the keyboard: scripted answers files.

``abstractrt answer --script FILE [--run RUN]`` and ``abstractrt start WF --answers FILE``
through ``CliRunner``, plus unit tests of the pieces in ``ops`` (rule parsing, matching,
and how a typed answer becomes a payload).
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from typer.testing import CliRunner

from cli_helpers import Result, empty_config, invoked, snapshot

from abstractrt_cli import ops
from abstractrt_cli.core.models import RunState, RunStatus, WaitReason, WaitState
from abstractrt_cli.errors import AnswerScriptError, InvalidChoiceError

EXAMPLES = Path(__file__).resolve().parent.parent / "workflows"

# Three prompts in a row: one `answer --script` call must answer all of them.
QUIZ = '''
"""Three questions in a row (a test workflow)."""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec


def deploy(run, ctx):
    return StepPlan(node_id="deploy", next_node="region", effect=Effect(
        EffectType.ASK_USER, {"prompt": "Deploy to production?"}, result_key="deploy"))


def region(run, ctx):
    return StepPlan(node_id="region", next_node="freeze", effect=Effect(
        EffectType.ASK_USER,
        {"prompt": "Pick a region for the cluster", "choices": ["eu-west-1", "us-east-1"],
         "allow_free_text": False},
        result_key="region"))


def freeze(run, ctx):
    return StepPlan(node_id="freeze", next_node="done", effect=Effect(
        EffectType.ASK_USER, {"prompt": "Any objection this week?",
                              "wait_key": f"approval:{run.run_id}:freeze"},
        result_key="freeze"))


def done(run, ctx):
    return StepPlan(node_id="done", complete_output={
        k: run.vars[k] for k in ("deploy", "region", "freeze")})


quiz = WorkflowSpec(workflow_id="quiz", entry_node="deploy",
                    nodes={"deploy": deploy, "region": region, "freeze": freeze, "done": done})


def again(run, ctx):
    run.vars.setdefault("rounds", 0)
    return StepPlan(node_id="again", next_node="count", effect=Effect(
        EffectType.ASK_USER, {"prompt": f"Round {run.vars['rounds'] + 1}: again?"},
        result_key="last"))


def count(run, ctx):
    run.vars["rounds"] += 1
    if run.vars["rounds"] < int(run.vars.get("max_rounds", 4)):
        return StepPlan(node_id="count", next_node="again")
    return StepPlan(node_id="count", complete_output={"rounds": run.vars["rounds"]})


loop = WorkflowSpec(workflow_id="loop", entry_node="again", nodes={"again": again, "count": count})


def confirm(run, ctx):
    return StepPlan(node_id="confirm", next_node="explode", effect=Effect(
        EffectType.ASK_USER, {"prompt": "Really explode?"}, result_key="ok"))


def explode(run, ctx):
    raise RuntimeError("kaboom")


fragile = WorkflowSpec(workflow_id="fragile", entry_node="confirm",
                       nodes={"confirm": confirm, "explode": explode})
'''

PRODUCT_RULES = """\
- prompt: "Deploy to production?"    # matches if the prompt contains this text
  answer: yes                         # YAML 1.1 would make this True; must stay "yes"
- prompt_regex: "^Pick a region"
  answer: "eu-west-1"
- wait_key: "approval:*"              # shell-style pattern on the wait key
  payload: {response: "no", reason: "freeze week"}
"""

APPROVAL_RULES = """\
- prompt: "Approve expense"
  answer: approve
- prompt_regex: "^Reason for"
  answer: "within budget"
"""


# ---------------------------------------------------------------------------- harness


class World:
    """A data dir, a workflows dir (QUIZ + copies of two examples) and an isolated env."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.wf = tmp / "workflows"
        self.wf.mkdir()
        (self.wf / "quiz.py").write_text(QUIZ, encoding="utf-8")
        for name in ("approval.py", "onboarding.py"):
            shutil.copy(EXAMPLES / name, self.wf / name)
        for k in list(os.environ):
            if k.startswith("ABSTRACTRT_"):
                monkeypatch.delenv(k)
        for k, v in {"ABSTRACTRT_DATA_DIR": str(self.data), "ABSTRACTRT_WORKFLOWS": str(self.wf),
                     "ABSTRACTRT_CONFIG": empty_config(tmp),
                     "ABSTRACTRT_ACTOR": "tester", "NO_COLOR": "1", "COLUMNS": "200"}.items():
            monkeypatch.setenv(k, v)
        self.runner = CliRunner()

    def __call__(self, *args: str, input: Optional[str] = None) -> Result:
        from abstractrt_cli.cli.app import app

        r = invoked(list(args), self.runner.invoke(app, list(args), input=input))
        assert r.exception is None, r.output  # an escaping exception is a bug
        assert "Traceback" not in r.stdout + r.stderr, r.output
        return r

    def ok(self, *args: str, input: Optional[str] = None) -> Result:
        r = self(*args, input=input)
        assert r.exit_code == 0, r.output
        return r

    def start(self, workflow: str, *sets: str) -> str:
        args = [a for s in sets for a in ("--set", s)]
        run = self.ok("start", workflow, *args, "--json").json()
        return run["run_id"]

    def show(self, run_id: str) -> Dict[str, Any]:
        return self.ok("show", run_id, "--json").json()

    def resumes(self, run_id: str) -> List[Dict[str, Any]]:
        return [r for r in self.ok("ledger", run_id, "--json").json() if r.get("kind") == "resume"]

    def rules(self, text: str, name: str = "rules.yaml") -> str:
        path = self.tmp / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return str(path)

    def snapshot(self) -> Dict[str, Any]:
        return snapshot(self.data)


@pytest.fixture
def w(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(tmp_path, monkeypatch)


def error_line(r: Result) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


# ---------------------------------------------------------------------------- answer --script


def test_script_answers_three_successive_prompts_in_one_call(w):
    rid = w.start("quiz")
    assert w.show(rid)["waiting"]["prompt"] == "Deploy to production?"

    r = w.ok("answer", "--script", w.rules(PRODUCT_RULES))
    assert "answered 3 prompts" in r.stdout, r.output
    assert "left unanswered" not in r.stdout

    run = w.show(rid)
    assert run["status"] == "completed", run
    assert run["output"] == {
        "deploy": {"response": "yes"},  # `answer: yes` stays the string "yes"
        "region": {"response": "eu-west-1"},
        "freeze": {"response": "no", "reason": "freeze week"},
    }
    rs = w.resumes(rid)
    assert [x["result"]["payload"] for x in rs] == [
        {"response": "yes"}, {"response": "eu-west-1"}, {"response": "no", "reason": "freeze week"}]
    assert [x["actor_id"] for x in rs] == ["tester"] * 3


def test_script_keeps_answering_a_loop_until_it_ends(w):
    rid = w.start("loop")
    r = w.ok("answer", "--script", w.rules('- prompt: "again?"\n  answer: "once more"\n'))
    assert "answered 4 prompts" in r.stdout, r.output
    assert w.show(rid)["output"] == {"rounds": 4}


@pytest.mark.parametrize("rule, matches", [
    ({"prompt": "Approve expense"}, True),                       # substring
    ({"prompt": "for 250 EUR?"}, True),
    ({"prompt": "Deploy"}, False),
    ({"prompt_regex": r"^Approve expense '.+' for \d+ EUR\?$"}, True),
    ({"prompt_regex": r"\d+ EUR"}, True),                        # searched, not anchored
    ({"prompt_regex": r"^Expense"}, False),
    ({"wait_key": "approval:*"}, True),                          # shell pattern, whole key
    ({"wait_key": "approval:????????-*"}, True),
    ({"wait_key": "approval"}, False),
    ({"wait_key": "user:*"}, False),
    ({"prompt": "Approve", "wait_key": "approval:*"}, True),     # every matcher must match
    ({"prompt": "Approve", "wait_key": "user:*"}, False),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v))
def test_rule_matchers(w, rule, matches):
    rid = w.start("approval")
    r = w.ok("answer", "--script", w.rules(json.dumps([dict(rule, answer="approve")]),
                                           name="rules.json"))
    run = w.show(rid)
    if matches:
        assert "answered 1 prompt" in r.stdout, r.output
        assert run["vars"]["decision"] == {"response": "approve"}
        assert run["waiting"]["prompt"].startswith("Reason for 'approve'")
    else:
        assert "answered 0 prompts" in r.stdout, r.output
        assert run["current_node"] == "decide" and "decision" not in run["vars"]


def test_first_matching_rule_wins(w):
    rid = w.start("approval")
    w.ok("answer", "--script", w.rules("""\
        - prompt: "Approve expense"
          answer: reject
        - prompt_regex: "."
          answer: approve
        """))
    run = w.show(rid)
    assert run["vars"]["decision"] == {"response": "reject"}
    # The catch-all second rule then answered the reason prompt.
    assert run["output"]["reason"] == "approve"


def test_payload_is_stored_whole_answer_is_shorthand(w):
    a = w.start("approval")
    w.ok("answer", "--run", a, "--script", w.rules("""\
        - prompt: "Approve expense"
          payload: {response: approve, by: cfo, budget_ok: true, limit: 2000}
        - prompt: "Reason for"
          answer: "fits the budget"
        """))
    run = w.show(a)
    assert run["vars"]["decision"] == {"response": "approve", "by": "cfo", "budget_ok": True,
                                       "limit": 2000}
    assert run["vars"]["reason"] == {"response": "fits the budget"}
    assert run["output"]["approved"] is True


@pytest.mark.parametrize("written, expected", [
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("NO", "NO"),
    ('"yes"', "yes"), ("10:30", "10:30"), ("true", "true"), ("3", "3"),
])
def test_yaml_answer_stays_the_text_written(w, written, expected):
    rid = w.start("quiz")
    w.ok("answer", "--script", w.rules(f'- prompt: "Deploy"\n  answer: {written}\n'))
    assert w.show(rid)["vars"]["deploy"] == {"response": expected}


def test_yaml_answer_with_leading_zeros_stays_the_text_written(w):
    """An answer is text: `answer: 007` must not become "7" (nor `1.10` become "1.1")."""
    rid = w.start("quiz")
    w.ok("answer", "--script", w.rules('- prompt: "Deploy"\n  answer: 007\n'))
    assert w.show(rid)["vars"]["deploy"] == {"response": "007"}


def test_rules_matching_nothing_answer_nothing_and_say_so(w):
    rid = w.start("approval", "title=Desk")
    before = w.snapshot()
    r = w.ok("answer", "--script", w.rules('- prompt: "Deploy to production?"\n  answer: "yes"\n'))
    assert "answered 0 prompts" in r.stdout, r.output
    assert "1 prompt left unanswered (no rule matched)" in r.stdout, r.output
    assert "Approve expense 'Desk'" in r.stdout and rid[:8] in r.stdout
    assert r.stderr == ""
    assert w.snapshot() == before

    rules = w.rules('- prompt: "Deploy"\n  answer: "yes"\n')
    j = w.ok("answer", "--script", rules, "--json").json()
    assert j["answered"] == [] and j["errors"] == []
    assert [u["run_id"] for u in j["unmatched"]] == [rid]
    assert w.snapshot() == before


def test_no_waiting_prompts_at_all(w):
    r = w.ok("answer", "--script", w.rules('- prompt: "x"\n  answer: "y"\n'))
    assert "answered 0 prompts" in r.stdout, r.output


VALID_FIRST = '- prompt: "Approve expense"\n  answer: approve\n'

MALFORMED = [
    # (id, file text, what the one error line must say)
    ("not-yaml", '- prompt: "Approve expense\n  answer: [approve\n', "neither valid JSON nor YAML"),
    ("bad-json", '[{"prompt": "Approve expense", "answer": "approve"',
     "neither valid JSON nor YAML"),
    ("mapping", 'prompt: "Approve expense"\nanswer: approve\n',
     "must be a non-empty list of rules"),
    ("scalar", "approve everything\n", "must be a non-empty list of rules"),
    ("empty-file", "", "must be a non-empty list of rules"),
    ("empty-list", "[]\n", "must be a non-empty list of rules"),
    ("rule-not-mapping", VALID_FIRST + "- approve\n", "rule 2: must be a mapping"),
    ("unknown-key", VALID_FIRST + '- prompt: "Reason"\n  anwser: ok\n',
     "rule 2: unknown key(s) anwser"),
    ("both", VALID_FIRST + '- prompt: "Reason"\n  answer: ok\n  payload: {response: ok}\n',
     "rule 2: needs exactly one of answer, payload"),
    ("neither", VALID_FIRST + '- prompt: "Reason"\n',
     "rule 2: needs exactly one of answer, payload"),
    ("no-matcher", VALID_FIRST + "- answer: ok\n",
     "rule 2: needs one of prompt, prompt_regex, wait_key"),
    ("bad-regex", VALID_FIRST + '- prompt_regex: "([unclosed"\n  answer: ok\n',
     "rule 2: prompt_regex is not a valid regex"),
    ("empty-prompt", VALID_FIRST + '- prompt: ""\n  answer: ok\n',
     "rule 2: prompt must be a non-empty string"),
    ("number-prompt", VALID_FIRST + "- prompt: 42\n  answer: ok\n",
     "rule 2: prompt must be a non-empty string"),
    ("payload-text", VALID_FIRST + '- prompt: "Reason"\n  payload: ok\n',
     "rule 2: payload must be a mapping"),
    ("answer-object", VALID_FIRST + '- prompt: "Reason"\n  answer: {response: ok}\n',
     "rule 2: answer must be text"),
    ("answer-null", VALID_FIRST + '- prompt: "Reason"\n  answer:\n', "rule 2: answer must be text"),
]


@pytest.mark.parametrize("text, needle", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_rules_are_refused_before_anything_is_answered(w, text, needle):
    rid = w.start("approval")
    path = w.rules(text)
    before = w.snapshot()
    r = w("answer", "--script", path)
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert needle in line and path in line, line
    assert r.stdout == ""
    assert w.snapshot() == before  # byte for byte: even the valid first rule answered nothing
    assert w.show(rid)["current_node"] == "decide"


@pytest.mark.parametrize("text, needle", [m[1:] for m in MALFORMED[::3]],
                         ids=[m[0] for m in MALFORMED[::3]])
def test_start_with_malformed_answers_creates_no_run(w, text, needle):
    w.start("approval")
    before = w.snapshot()
    r = w("start", "approval", "--answers", w.rules(text))
    assert r.exit_code == 1, r.output
    assert needle in error_line(r)
    assert w.snapshot() == before


def test_missing_rules_file(w):
    w.start("approval")
    before = w.snapshot()
    r = w("answer", "--script", str(w.tmp / "nope.yaml"))
    assert r.exit_code == 1, r.output
    assert "nope.yaml" in error_line(r) and "no such file" in error_line(r)
    assert w.snapshot() == before


def test_rules_from_standard_input(w):
    rid = w.start("approval")
    r = w.ok("answer", "--script", "-", input=APPROVAL_RULES)
    assert "answered 2 prompts" in r.stdout, r.output
    assert w.show(rid)["status"] == "completed"


def test_invalid_choice_in_a_rule_is_reported_exit_1_others_still_answered(w):
    bad = w.start("approval", "title=Bad")
    good = w.start("quiz")
    before_bad = (w.show(bad), w.resumes(bad))
    r = w("answer", "--script", w.rules("""\
        - prompt: "Approve expense"
          answer: maybe
        - prompt: "Deploy"
          answer: "yes"
        """))
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert bad[:8] in line and "invalid answer 'maybe'" in line
    assert "must be one of 'approve', 'reject'" in line
    assert "answered 1 prompt" in r.stdout, r.output
    assert (w.show(bad), w.resumes(bad)) == before_bad  # refused: nothing recorded
    assert w.show(good)["vars"]["deploy"] == {"response": "yes"}

    j = w("answer", "--script", w.rules('- prompt: "Approve"\n  answer: maybe\n'), "--json")
    assert j.exit_code == 1, j.output
    doc = j.json()
    assert doc["answered"] == [] and len(doc["errors"]) == 1
    assert "invalid answer 'maybe'" in doc["errors"][0]


def test_prompt_whose_answer_was_refused_is_not_called_unmatched(w):
    """A rule did match; its answer was refused. "no rule matched" would mislead."""
    w.start("approval")
    r = w("answer", "--script", w.rules('- prompt: "Approve"\n  answer: maybe\n'))
    assert r.exit_code == 1, r.output
    assert "no rule matched" not in r.stdout, r.output


def test_answered_run_that_then_fails_exits_3(w):
    rid = w.start("fragile")
    r = w("answer", "--script", w.rules('- prompt: "Really explode?"\n  answer: "yes"\n'))
    assert r.exit_code == 3, r.output  # the command worked; a run it drove failed
    assert "answered 1 prompt" in r.stdout and "run failed" in r.stdout, r.output
    run = w.show(rid)
    assert run["status"] == "failed" and "kaboom" in run["error"]

    r = w("start", "fragile", "--answers", w.rules('- prompt: "Really"\n  answer: "yes"\n'))
    assert r.exit_code == 3, r.output


def test_script_answer_warns_when_the_workflow_changed_since_the_run_started(w):
    """`resume` warns that the workflow's code changed; answering from a script must too."""
    rid = w.start("approval")
    src = w.wf / "approval.py"
    src.write_text(src.read_text(encoding="utf-8") + "\n# edited after the run started\n",
                   encoding="utf-8")
    r = w.ok("answer", "--script", w.rules(APPROVAL_RULES))
    assert "answered 2 prompts" in r.stdout, r.output
    assert "warning: workflow 'approval' changed since run" in r.stderr, r.output
    assert w.show(rid)["status"] == "completed"


def test_run_option_restricts_to_that_run(w):
    a = w.start("approval", "title=Mine")
    b = w.start("approval", "title=Theirs")
    b_before = w.show(b)
    r = w.ok("answer", "--script", w.rules(APPROVAL_RULES), "--run", a[:10])
    assert "answered 2 prompts" in r.stdout, r.output
    assert "Theirs" not in r.stdout
    assert w.show(a)["status"] == "completed"
    assert w.show(b) == b_before

    # RUN as an argument is the same as --run; giving two different runs is wrong usage.
    w.ok("answer", b, "--script", w.rules(APPROVAL_RULES))
    assert w.show(b)["status"] == "completed"
    r = w("answer", a, "--run", b, "--script", w.rules(APPROVAL_RULES))
    assert r.exit_code == 2, r.output


def test_run_option_includes_the_runs_children(w):
    p = w.start("onboarding", "name=Ada Lovelace")
    q = w.start("onboarding", "name=Alan Turing")
    child = w.show(p)["waiting"]["details"]["sub_run_id"]
    q_child = w.show(q)["waiting"]["details"]["sub_run_id"]
    q_before = (w.show(q), w.show(q_child))

    r = w.ok("answer", "--script",
             w.rules('- prompt: "Write a welcome note"\n  answer: "Welcome!"\n'), "--run", p)
    assert "answered 1 prompt" in r.stdout, r.output
    assert child[:8] in r.stdout
    assert w.show(child)["status"] == "completed"
    parent = w.show(p)  # resumed by itself when the child completed
    assert parent["status"] == "completed", parent
    assert parent["output"]["welcome_note"] == "Welcome!"
    assert (w.show(q), w.show(q_child)) == q_before


def test_run_option_unknown_run(w):
    w.start("approval")
    before = w.snapshot()
    r = w("answer", "--script", w.rules(APPROVAL_RULES), "--run", "nosuchrun")
    assert r.exit_code == 1, r.output
    assert "no such run: nosuchrun" in error_line(r)
    assert w.snapshot() == before


def test_answer_script_json_is_one_document(w):
    rid = w.start("approval")
    w.start("quiz")  # matched by no rule: reported as unmatched
    r = w.ok("answer", "--script", w.rules(APPROVAL_RULES), "--json")
    doc = r.json()
    assert set(doc) >= {"answered", "errors", "unmatched"}
    assert [(a["run_id"], a["payload"], a["rule"]) for a in doc["answered"]] == [
        (rid, {"response": "approve"}, 1), (rid, {"response": "within budget"}, 2)]
    assert doc["answered"][0]["wait_key"] == f"approval:{rid}"
    assert doc["answered"][-1]["status"] == "completed"
    assert doc["errors"] == []
    assert [u["prompt"] for u in doc["unmatched"]] == ["Deploy to production?"]

    # --json before the command name works the same.
    doc2 = w.ok("--json", "answer", "--script", w.rules(APPROVAL_RULES)).json()
    assert doc2["answered"] == [] and len(doc2["unmatched"]) == 1


def test_interactive_answer_has_no_json_form(w):
    r = w("answer", "--json")
    assert r.exit_code == 2, r.output
    assert "--script" in error_line(r)
    assert r.json()["error"]["code"] == "usage" and r.json()["error"]["exit"] == 2


def test_interactive_answer_needs_a_terminal(w):
    rid = w.start("approval")
    before = w.snapshot()
    r = w("answer", input="1\nok\n")
    assert r.exit_code == 2, r.output
    line = error_line(r)
    assert "--script" in line and "resume RUN --answer" in line
    assert w.snapshot() == before
    assert w.show(rid)["status"] == "waiting"


# ------------------------------------------------ answering interactively while others answer too


def _session() -> ops.Session:
    from abstractrt_cli.settings import resolve

    return ops.Session(resolve())


def test_interactive_answer_for_a_prompt_answered_elsewhere_moves_on(w):
    """While the person types, someone else answers the prompt (another shell) and the run
    moves on to its next prompt, with another wait key: the typed answer is dropped and the
    new prompt is asked — the session does not die with a wait-key error."""
    rid = w.start("approval")
    asked: List[Any] = []

    def ask(run: RunState, error: Optional[str]) -> Optional[str]:
        asked.append((run.waiting.prompt, error))
        if len(asked) == 1:
            w.ok("resume", rid, "--answer", "approve")  # meanwhile, elsewhere
            return "reject"
        return None  # skip the next prompt

    ops.answer_interactively(_session(), ask)
    run = w.show(rid)
    assert run["vars"]["decision"] == {"response": "approve"}
    assert "reason" not in run["vars"]
    assert [p for p, _ in asked][1:] == ["Reason for 'approve' (free text, kept in the ledger)?"]


def test_interactive_answer_is_never_applied_to_a_newer_prompt_with_the_same_wait_key(w):
    """A loop asks again with the same (default) wait key. If round 1 is answered elsewhere
    while the person types, their answer to round 1 must not silently answer round 2."""
    rid = w.start("loop")
    asked: List[str] = []

    def ask(run: RunState, error: Optional[str]) -> Optional[str]:
        asked.append(run.waiting.prompt)
        if len(asked) == 1:
            w.ok("resume", rid, "--answer", "from elsewhere")
            return "typed for round 1"
        return None

    ops.answer_interactively(_session(), ask)
    run = w.show(rid)
    assert run["vars"]["rounds"] == 1, run["vars"]
    assert "typed for round 1" not in json.dumps(w.resumes(rid))
    assert asked == ["Round 1: again?", "Round 2: again?"]


# ---------------------------------------------------------------------------- start --answers


def test_start_with_answers_completes_approval_in_one_command(w):
    r = w.ok("start", "approval", "--set", "title=Laptop", "--set", "amount=1450",
             "--answers", w.rules(APPROVAL_RULES))
    assert "answered 2 prompts" in r.stdout, r.output
    assert "started run" in r.stderr
    runs = w.ok("runs", "--json").json()
    assert len(runs) == 1 and runs[0]["status"] == "completed"
    assert runs[0]["output"] == {"title": "Laptop", "amount": 1450, "approved": True,
                                 "reason": "within budget"}
    assert "completed" in r.stdout


def test_start_with_answers_json_prints_only_the_run(w):
    r = w.ok("start", "approval", "--answers", w.rules(APPROVAL_RULES), "--json")
    run = r.json()
    assert run["status"] == "completed" and run["output"]["reason"] == "within budget"


def test_start_with_answers_only_answers_its_own_run(w):
    other = w.start("approval", "title=Older")
    before = w.show(other)
    w.ok("start", "approval", "--answers", w.rules(APPROVAL_RULES))
    assert w.show(other) == before


def test_start_with_answers_answers_the_childs_prompts_too(w):
    r = w.ok("start", "onboarding", "--set", "name=Ada", "--answers",
             w.rules('- prompt: "Write a welcome note for Ada"\n  answer: "Hello Ada"\n'), "--json")
    run = r.json()
    assert run["status"] == "completed", run
    assert run["output"]["welcome_note"] == "Hello Ada"


def test_start_with_answers_leaves_unmatched_prompt_waiting(w):
    r = w.ok("start", "approval", "--answers", w.rules(VALID_FIRST))
    assert "answered 1 prompt" in r.stdout, r.output
    assert "1 prompt left unanswered" in r.stdout, r.output
    assert "Reason for 'approve'" in r.stdout  # the card shows where the run now waits


def test_start_with_answers_invalid_choice_exit_1_run_kept_waiting(w):
    r = w("start", "approval", "--answers", w.rules('- prompt: "Approve"\n  answer: maybe\n'))
    assert r.exit_code == 1, r.output
    assert "invalid answer 'maybe'" in r.stderr
    runs = w.ok("runs", "--json").json()
    assert len(runs) == 1 and runs[0]["status"] == "waiting"


def test_start_answers_with_no_tick_is_wrong_usage(w):
    r = w("start", "approval", "--no-tick", "--answers", w.rules(APPROVAL_RULES))
    assert r.exit_code == 2, r.output
    assert "--no-tick" in error_line(r)
    assert w.snapshot() == {}  # nothing created


# ---------------------------------------------------------------------------- ops: rules


def test_parse_answer_rules_builds_rules():
    rules = ops.parse_answer_rules([
        {"prompt": "Deploy", "answer": "yes"},
        {"prompt_regex": "^Pick", "wait_key": "user:*", "answer": True},
        {"wait_key": "approval:*", "payload": {"response": "no", "reason": "freeze"}},
        {"prompt": "Count", "answer": 3},
    ], source="r.yaml")
    assert [r.index for r in rules] == [0, 1, 2, 3]
    assert rules[0].prompt == "Deploy" and rules[0].payload == {"response": "yes"}
    assert rules[1].prompt_regex.pattern == "^Pick" and rules[1].wait_key == "user:*"
    assert rules[1].payload == {"response": "true"}
    assert rules[2].payload == {"response": "no", "reason": "freeze"}
    assert rules[3].payload == {"response": "3"}
    assert "rule 2" in rules[1].describe()


def test_parse_answer_rules_accepts_a_rules_key():
    rules = ops.parse_answer_rules({"rules": [{"prompt": "x", "answer": "y"}]}, source="r.yaml")
    assert len(rules) == 1


@pytest.mark.parametrize("data, needle", [
    ({"prompt": "x", "answer": "y"}, "non-empty list"),
    ([], "non-empty list"),
    (None, "non-empty list"),
    (["x"], "rule 1: must be a mapping, not str"),
    ([{"prompt": "x", "answer": "y", "extra": 1}], "unknown key(s) extra"),
    ([{"prompt": "x", "answer": "y", "payload": {}}], "exactly one of answer, payload"),
    ([{"prompt": "x"}], "exactly one of answer, payload"),
    ([{"answer": "y"}], "needs one of prompt, prompt_regex, wait_key"),
    ([{"prompt_regex": "(", "answer": "y"}], "not a valid regex"),
    ([{"wait_key": 5, "answer": "y"}], "wait_key must be a non-empty string"),
    ([{"prompt": "x", "answer": ["a"]}], "answer must be text"),
    ([{"prompt": "x", "payload": ["a"]}], "payload must be a mapping"),
])
def test_parse_answer_rules_refuses(data, needle):
    with pytest.raises(AnswerScriptError) as e:
        ops.parse_answer_rules(data, source="r.yaml")
    assert needle in str(e.value) and "r.yaml" in str(e.value)
    assert e.value.exit_code == 1


def test_load_answer_rules_reads_yaml_with_string_answers(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("- prompt: a\n  answer: yes\n- prompt: b\n  answer: off\n", encoding="utf-8")
    assert [r.payload for r in ops.load_answer_rules(str(path))] == [
        {"response": "yes"}, {"response": "off"}]


def _waiting(prompt: str = "Approve?", **wait: Any) -> RunState:
    run = RunState.new(workflow_id="wf", entry_node="ask", run_id="run-1234567890")
    run.status = RunStatus.WAITING
    run.waiting = WaitState(reason=WaitReason.USER, prompt=prompt,
                            wait_key=wait.pop("wait_key", "approval:run-1234567890"), **wait)
    return run


def test_rule_matches_waiting_run():
    [rule] = ops.parse_answer_rules(
        [{"prompt": "Approve", "wait_key": "approval:*", "answer": "x"}], source="r")
    assert rule.matches(_waiting())
    assert not rule.matches(_waiting(wait_key="user:run:ask"))
    assert not rule.matches(_waiting(prompt="Reject?"))
    done = _waiting()
    done.waiting = None
    assert not rule.matches(done)


# ---------------------------------------------------------------------------- ops: typed answers


MENU = dict(choices=["approve", "reject"], allow_free_text=False)


@pytest.mark.parametrize("typed, response", [
    ("1", "approve"), ("2", "reject"), (" 2 ", "reject"),
    ("approve", "approve"), ("REJECT", "reject"), ("  Approve\n", "approve"),
])
def test_interpret_answer_menu(typed, response):
    assert ops.interpret_answer(_waiting(**MENU), typed) == {"response": response}


@pytest.mark.parametrize("typed", ["-1", "maybe", "approved", ""])
def test_interpret_answer_menu_refuses_other_text(typed):
    with pytest.raises(InvalidChoiceError) as e:
        ops.interpret_answer(_waiting(**MENU), typed)
    assert "must be one of 'approve', 'reject'" in str(e.value)


@pytest.mark.parametrize("typed", ["0", "3", "12"])
def test_interpret_answer_menu_number_off_the_menu_says_which_numbers(typed):
    with pytest.raises(InvalidChoiceError) as e:
        ops.interpret_answer(_waiting(**MENU), typed)
    assert f"there is no choice {typed}" in str(e.value) and "pick 1–2" in str(e.value)
    assert "must be one of" not in str(e.value)


def test_interpret_answer_menu_with_free_text_allowed():
    run = _waiting(choices=["approve", "reject"], allow_free_text=True)
    assert ops.interpret_answer(run, "1") == {"response": "approve"}
    assert ops.interpret_answer(run, "Reject") == {"response": "reject"}
    assert ops.interpret_answer(run, "ask me next week") == {"response": "ask me next week"}


def test_interpret_answer_free_text():
    run = _waiting("Reason?")
    assert ops.interpret_answer(run, "  within budget ") == {"response": "within budget"}
    assert ops.interpret_answer(run, "1") == {"response": "1"}
    with pytest.raises(InvalidChoiceError):
        ops.interpret_answer(run, "   ")
