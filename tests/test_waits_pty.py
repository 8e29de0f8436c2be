"""Interactive ``answer`` on a prompt with an object schema, in a real pseudo-terminal
(PRODUCT §8): asked field by field in ``properties`` order, enums as numbered menus,
defaults offered, numbers, integers and booleans checked as typed and asked again when
wrong; a prompt the actor may not answer is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from cli_helpers import EXAMPLE_WORKFLOWS, empty_config
from test_answer_pty import Terminal, resumes, run_json, state
from test_waits_helpers import WAITS_WORKFLOWS

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

CLAIM = {
    "type": "object",
    "required": ["amount", "category"],
    "properties": {
        "amount": {"type": "number", "maximum": 1000, "description": "in EUR"},
        "category": {"enum": ["travel", "food", "other"]},
        "nights": {"type": "integer", "minimum": 0, "default": 1},
        "urgent": {"type": "boolean", "default": False},
        "note": {"type": "string"},
    },
}


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    for f in EXAMPLE_WORKFLOWS.glob("*.py"):
        shutil.copy(f, workflows / f.name)
    (workflows / "waits.py").write_text(WAITS_WORKFLOWS, encoding="utf-8")
    e = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
    e.update({"ABSTRACTRT_DATA_DIR": str(tmp_path / "data"), "ABSTRACTRT_WORKFLOWS": str(workflows),
              "ABSTRACTRT_CONFIG": empty_config(tmp_path), "ABSTRACTRT_ACTOR": "tester",
              "NO_COLOR": "1", "COLUMNS": "200", "TERM": "xterm"})
    return e


@pytest.fixture
def terminal(env):
    opened: List[Terminal] = []

    def open_terminal(*args: str) -> Terminal:
        t = Terminal(env, *args)
        opened.append(t)
        return t

    yield open_terminal
    for t in opened:
        t.close()


def ask(env, **opts) -> str:
    run = run_json(env, "start", "ask", "--vars", json.dumps({"ask": opts}))
    assert run["status"] == "waiting", run
    return run["run_id"]


def test_an_object_schema_is_asked_field_by_field_and_checked_as_typed(env, terminal):
    rid = ask(env, prompt="Claim your expenses", schema=CLAIM)
    t = terminal("answer")

    card = t.expect("amount (number; empty skips this prompt; Ctrl-D to stop)> ")
    assert "Claim your expenses" in card and rid in card
    assert "amount (number, required)" in card  # the card lists the fields
    assert "amount — in EUR" in card
    t.type("lots")
    assert "✗ amount: expected a number, not 'lots'" in t.expect("amount (")
    t.expect("> ")
    t.type("5000")
    assert "✗ amount: 5000 is greater than the maximum of 1000" in t.expect("> ")
    t.type("12.5")

    menu = t.expect("category (1–3 or the value; empty skips this prompt; Ctrl-D to stop)> ")
    assert "1) travel" in menu and "2) food" in menu and "3) other" in menu
    t.type("9")
    assert "✗ category: '9' is not one of \"travel\", \"food\", \"other\"" in t.expect("> ")
    t.type("2")

    t.expect("nights (whole number; empty: 1; Ctrl-D to stop)> ")
    t.type("1.5")
    assert "✗ nights: expected a whole number, not '1.5'" in t.expect("> ")
    t.type("-2")
    assert "✗ nights: -2 is less than the minimum of 0" in t.expect("> ")
    t.type("")  # the default

    t.expect("urgent (yes/no; empty: false; Ctrl-D to stop)> ")
    t.type("maybe")
    assert "✗ urgent: expected yes or no, not 'maybe'" in t.expect("> ")
    t.type("yes")

    t.expect("note (text; empty leaves it out; Ctrl-D to stop)> ")
    t.type("")

    t.expect("answered 1 prompt")
    assert t.finish() == 0, t.transcript
    assert "Traceback" not in t.transcript
    payload = {"amount": 12.5, "category": "food", "nights": 1, "urgent": True}
    assert state(env, rid)["output"]["answer"] == payload
    (resume,) = resumes(env, rid)
    assert resume["result"]["payload"] == payload and resume["actor_id"] == "tester"


def test_an_empty_required_field_skips_the_prompt_and_changes_nothing(env, terminal):
    rid = ask(env, prompt="Claim", schema=CLAIM)
    before = run_json(env, "ledger", rid)
    t = terminal("answer")
    t.expect("amount (number; empty skips this prompt; Ctrl-D to stop)> ")
    t.type("")
    t.expect("answered 0 prompts, skipped 1")
    assert t.finish() == 0, t.transcript
    assert run_json(env, "ledger", rid) == before


def test_a_prompt_the_actor_may_not_answer_is_skipped_saying_so(env, terminal):
    theirs = ask(env, prompt="Alice only", allowed_actors=["alice"])
    mine = ask(env, prompt="Anyone")
    t = terminal("answer")
    shown = t.expect("answer (text; empty to skip; Ctrl-D to stop)> ")
    assert f"skipped run {theirs[:8]} ('Alice only'): tester may not answer run {theirs}: " \
           "only alice may" in shown
    assert "Anyone" in shown
    t.type("sure")
    t.expect("answered 1 prompt, skipped 1")
    assert t.finish() == 0, t.transcript
    assert state(env, mine)["status"] == "completed"
    assert state(env, theirs)["status"] == "waiting"
