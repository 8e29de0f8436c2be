"""ops.py as a library: what commands do, without the CLI around them."""

from __future__ import annotations

from pathlib import Path

import pytest

from abstractrt_cli import ops
from abstractrt_cli.core.models import RunStatus, WaitReason
from abstractrt_cli.settings import Settings

CHILD_ASKS_TWICE = '''
from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec

def q1(run, ctx):
    return StepPlan("q1", effect=Effect(EffectType.ASK_USER, {"prompt": "First?"}, "a1"), next_node="q2")

def q2(run, ctx):
    return StepPlan("q2", effect=Effect(EffectType.ASK_USER, {"prompt": "Second?"}, "a2"), next_node="end")

def end(run, ctx):
    return StepPlan("end", complete_output={"a": [run.vars["a1"]["response"], run.vars["a2"]["response"]]})

child = WorkflowSpec("child", "q1", {"q1": q1, "q2": q2, "end": end})

def start_child(run, ctx):
    return StepPlan("start", effect=Effect(EffectType.START_SUBWORKFLOW, {"workflow_id": "child"}, "kid"),
                    next_node="done")

def done(run, ctx):
    return StepPlan("done", complete_output=run.vars["kid"]["output"])

parent = WorkflowSpec("parent", "start", {"start": start_child, "done": done})
'''


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ops.Session:
    wf = tmp_path / "workflows"
    wf.mkdir()
    (wf / "family.py").write_text(CHILD_ASKS_TWICE, encoding="utf-8")
    monkeypatch.setenv("ABSTRACTRT_ACTOR", "tester")
    return ops.Session(Settings(data_dir=tmp_path / "data", workflows_dir=wf,
                                data_dir_from="option", workflows_dir_from="option"))


def test_waiting_shows_what_a_child_waits_for_now(session: ops.Session) -> None:
    parent = ops.start(session, "parent", vars={}).run
    assert parent.waiting is not None and parent.waiting.reason == WaitReason.SUBWORKFLOW
    child_id = parent.waiting.details["sub_run_id"]
    ops.resume(session, child_id, {"response": "one"})

    listed = {r.run_id: r for r in ops.waiting(session)}
    details = listed[parent.run_id].waiting.details
    assert details["sub_waiting"]["prompt"] == "Second?"
    # The parent's file still records the first wait: the refresh is for display only.
    assert session.run_store.load(parent.run_id).waiting.details["sub_waiting"]["prompt"] == "First?"

    ops.resume(session, child_id, {"response": "two"})
    final = session.run_store.load(parent.run_id)
    assert final.status == RunStatus.COMPLETED
    assert final.output == {"a": ["one", "two"]}


def test_start_refuses_an_existing_run_id(session: ops.Session) -> None:
    run = ops.start(session, "child", vars={}).run
    rt = session.runtime()
    with pytest.raises(ValueError, match="already exists"):
        rt.start(workflow=session.workflows.entry("child").spec, run_id=run.run_id)
    assert session.run_store.load(run.run_id).waiting.prompt == "First?"


def test_reindex_finds_a_run_restored_behind_the_index(session: ops.Session, tmp_path: Path) -> None:
    import json
    import shutil

    from typer.testing import CliRunner

    from abstractrt_cli.cli.app import app

    run = ops.start(session, "child", vars={}).run
    run_file = next((tmp_path / "data").rglob(f"{run.run_id}.json"))
    backup = tmp_path / "backup.json"
    shutil.copy(run_file, backup)
    ops.resume(session, run.run_id, {"response": "one"})
    ops.resume(session, run.run_id, {"response": "two"})
    assert [r.run_id for r in ops.waiting(session)] == []

    # Restoring the file from a backup bypasses the store: only a rebuild can notice.
    shutil.copy(backup, run_file)
    result = CliRunner().invoke(app, ["reindex", "--json", "--data-dir", str(tmp_path / "data"),
                                      "--workflows", str(tmp_path / "workflows")])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["runs"] == 1 and counts["corrupt"] == 0
    fresh = ops.Session(session.settings)
    assert [r.run_id for r in ops.waiting(fresh)] == [run.run_id]


def test_abstractruntime_store_names_work_on_one_data_dir(tmp_path: Path) -> None:
    from abstractrt_cli import (Effect, EffectType, JsonFileRunStore, JsonlLedgerStore, Runtime,
                                StepPlan, WorkflowSpec, verify_ledger_chain)

    def ask(run, ctx):
        return StepPlan("ask", effect=Effect(EffectType.ASK_USER, {"prompt": "ok?"}, "a"),
                        next_node="end")

    def end(run, ctx):
        return StepPlan("end", complete_output={"a": run.vars["a"]["response"]})

    wf = WorkflowSpec("w", "ask", {"ask": ask, "end": end})
    rt = Runtime(run_store=JsonFileRunStore(tmp_path), ledger_store=JsonlLedgerStore(tmp_path))
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id).status.value == "waiting"
    # A second runtime, as another process would have, over the same directory.
    rt2 = Runtime(run_store=JsonFileRunStore(tmp_path), ledger_store=JsonlLedgerStore(tmp_path))
    done = rt2.resume(workflow=wf, run_id=run_id, wait_key=None, payload={"response": "y"})
    assert done.output == {"a": "y"}
    assert verify_ledger_chain(rt2.get_ledger(run_id))["ok"]


def test_workflows_warns_when_the_directory_is_missing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abstractrt_cli.cli.app import app

    r = CliRunner().invoke(app, ["workflows", "--workflows", str(tmp_path / "nowhere"),
                                 "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 0, r.output
    assert "does not exist" in r.stderr and "--workflows" in r.stderr


def test_commands_on_a_data_dir_that_does_not_exist_create_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abstractrt_cli.cli.app import app

    data = tmp_path / "data"
    opts = ["--data-dir", str(data), "--workflows", str(tmp_path / "workflows")]
    runner = CliRunner()
    for args, code in ((["runs"], 0), (["waiting", "--json"], 0), (["tick", "--all", "--quiet"], 0),
                       (["show", "abcdef12"], 1), (["resume", "abcdef12", "--answer", "x"], 1),
                       (["emit", "some:key", "--payload", "{}", "--no-keep"], 0), (["ledger", "abcdef12", "--verify"], 1),
                       (["cancel", "abcdef12"], 1), (["reindex"], 0), (["start", "nope"], 1)):
        r = runner.invoke(app, args + opts)
        assert r.exit_code == code, (args, r.output)
        assert not data.exists(), args


def test_version_option() -> None:
    from typer.testing import CliRunner

    from abstractrt_cli import __version__
    from abstractrt_cli.cli.app import app

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"abstractrt {__version__}"


def test_interactive_answering_follows_the_run_just_answered(session: ops.Session) -> None:
    # Two runs wait; the older one asks twice. After answering the newer run's first
    # question, its second question comes before the other run's.
    older = ops.start(session, "child", vars={}).run
    newer = ops.start(session, "child", vars={}).run
    asked = []
    answers = iter(["a", "b", "c", "d"])

    def ask(run, error):
        asked.append((run.run_id, run.waiting.prompt))
        if len(asked) == 1:
            assert run.run_id == older.run_id  # oldest first to begin with
        return next(answers)

    ops.answer_interactively(session, ask)
    assert asked == [(older.run_id, "First?"), (older.run_id, "Second?"),
                     (newer.run_id, "First?"), (newer.run_id, "Second?")]
