"""The one line that makes ``abstractruntime`` our compatibility package, and its limits.

The real AbstractRuntime is a test dependency, so aliasing is checked in child
interpreters: this session keeps importing the real one.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

ALIAS_LINE = 'import sys, abstractrt_cli.compat.abstractruntime as ar; sys.modules["abstractruntime"] = ar'


def run_aliased(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child interpreter, after the documented line."""
    program = ALIAS_LINE + "\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)


def test_after_the_line_every_submodule_is_the_compat_module_not_a_second_copy():
    r = run_aliased("""
        import abstractruntime
        from abstractruntime.storage.in_memory import InMemoryRunStore
        from abstractruntime.scheduler.scheduler import Scheduler
        import abstractruntime.core.runtime as core_runtime
        import abstractrt_cli.compat.abstractruntime.core.runtime as real
        assert InMemoryRunStore is abstractruntime.InMemoryRunStore
        assert Scheduler is abstractruntime.Scheduler
        assert core_runtime is real
        # the module keeps saying where it really lives
        assert core_runtime.__spec__.name == "abstractrt_cli.compat.abstractruntime.core.runtime"
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_modules_it_does_not_mirror_are_missing_not_half_loaded():
    r = run_aliased("""
        try:
            import abstractruntime.integrations.abstractcore
        except ModuleNotFoundError as exc:
            print(exc.name)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("abstractruntime.integrations")


def test_a_workflow_module_written_for_abstractruntime_runs_unchanged(tmp_path):
    module = tmp_path / "legacy_flow.py"
    module.write_text(textwrap.dedent("""
        from abstractruntime import Effect, EffectType, StepPlan, WorkflowSpec, create_scheduled_runtime

        def ask(run, ctx):
            return StepPlan(node_id="ask", effect=Effect(type=EffectType.ASK_USER,
                            payload={"prompt": "Name?"}, result_key="answer"), next_node="done")

        def done(run, ctx):
            return StepPlan(node_id="done", complete_output={"hello": run.vars["answer"]["text"]})

        WORKFLOW = WorkflowSpec(workflow_id="legacy", entry_node="ask", nodes={"ask": ask, "done": done})

        def main():
            sr = create_scheduled_runtime(auto_start=False)
            run_id, state = sr.run(WORKFLOW)
            assert state.status.value == "waiting"
            return sr.respond(run_id, {"text": "Ada"}).output
    """))
    r = run_aliased(f"""
        sys.path.insert(0, {str(tmp_path)!r})
        import legacy_flow
        print(legacy_flow.main())
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'hello': 'Ada'}"


def test_importing_the_compat_package_does_not_shadow_an_installed_abstractruntime():
    real = pytest.importorskip("abstractruntime")
    import abstractrt_cli.compat.abstractruntime  # noqa: F401  (installs the alias finder)

    storage = importlib.import_module("abstractruntime.storage.in_memory")
    assert sys.modules["abstractruntime"] is real
    assert not storage.__name__.startswith("abstractrt_cli")
    assert "abstractrt_cli" not in (storage.__file__ or "")
