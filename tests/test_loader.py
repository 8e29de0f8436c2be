"""The workflows directory -> a registry: what is imported, what is registered, what breaks.

Workflow files are written into ``tmp_path`` by each test; they run through our
``Runtime`` over in-memory stores with the loaded registry.
"""

from __future__ import annotations

import hashlib
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

from abstractrt_cli import InMemoryLedgerStore, InMemoryRunStore, RunState, RunStatus, Runtime
from abstractrt_cli.core.models import WaitReason
from abstractrt_cli.errors import (
    DuplicateWorkflowError,
    UnknownWorkflowError,
    WorkflowLoadError,
)
from abstractrt_cli.loader import LoadedWorkflows, describe, fingerprint_file, load_workflows


@pytest.fixture(autouse=True)
def _isolate_imports(tmp_path: Path) -> Iterator[None]:
    """Workflow files put their directory on sys.path and modules in sys.modules: undo it."""
    saved_path = list(sys.path)
    before = set(sys.modules)
    yield
    sys.path[:] = saved_path
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if name.startswith("abstractrt_workflows_") or file.startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def wfdir(tmp_path: Path) -> Path:
    d = tmp_path / "workflows"
    d.mkdir()
    return d


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def make_runtime(loaded: LoadedWorkflows) -> Runtime:
    return Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore(),
                   workflow_registry=loaded.registry)


def start(rt: Runtime, loaded: LoadedWorkflows, workflow_id: str,
          vars: Optional[Dict[str, Any]] = None) -> RunState:
    run_id = rt.start(workflow=loaded.entry(workflow_id).spec, vars=vars)
    return rt.tick(run_id=run_id)


def effect_attempts(rt: Runtime, run_id: str) -> list:
    return [(r["effect"]["type"], r["status"], r["attempt"])
            for r in rt.get_ledger(run_id) if r.get("kind", "effect") == "effect"]


SIMPLE = '''
"""{doc}"""
from abstractrt_cli import StepPlan, WorkflowSpec

def done(run, ctx):
    return StepPlan(node_id="done", complete_output={{"from": "{wid}"}})

{var} = WorkflowSpec(workflow_id="{wid}", entry_node="done", nodes={{"done": done}})
'''


def simple(wid: str, *, doc: str = "A workflow.", var: str = "WORKFLOW") -> str:
    return SIMPLE.format(wid=wid, doc=doc, var=var)


# --------------------------------------------------------------------------- which files


def test_every_public_py_file_is_imported_underscore_files_are_not(wfdir: Path) -> None:
    write(wfdir, "alpha.py", simple("alpha"))
    write(wfdir, "beta.py", """
        from abstractrt_cli import StepPlan, WorkflowSpec
        from _helpers import greeting

        def hello(run, ctx):
            return StepPlan(node_id="hello", complete_output={"text": greeting(run.vars["name"])})

        BETA = WorkflowSpec("beta", "hello", {"hello": hello})
    """)
    # Imported only through beta.py: its own spec is not registered and, as a file, it
    # would be broken if it were imported on its own (it must not be).
    write(wfdir, "_helpers.py", """
        from abstractrt_cli import StepPlan, WorkflowSpec

        def greeting(name):
            return f"hello {name}"

        def x(run, ctx):
            return StepPlan("x", complete_output={})

        HIDDEN = WorkflowSpec("hidden", "x", {"x": x})
    """)
    write(wfdir, "_scratch.py", "raise RuntimeError('never imported')\n")
    write(wfdir, "notes.txt", "not python\n")
    (wfdir / "sub").mkdir()
    write(wfdir / "sub", "nested.py", simple("nested"))

    loaded = load_workflows(wfdir)

    assert list(loaded.registry) == ["alpha", "beta"]
    assert loaded.broken == []
    rt = make_runtime(loaded)
    run = start(rt, loaded, "beta", {"name": "ada"})
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == {"text": "hello ada"}


def test_specs_registered_by_id_with_absolute_source_fingerprint_and_doc(
        wfdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(wfdir, "alpha.py", simple("alpha", doc="Alpha does things.\n\nAt length."))
    write(wfdir, "two.py", simple("two_a", var="A") + simple("two_b", doc="", var="B")
          + "\nALIAS = A\n")
    monkeypatch.chdir(tmp_path)

    loaded = load_workflows(Path("workflows"))  # a relative directory

    entry = loaded.entry("alpha")
    assert Path(entry.source).is_absolute()
    assert entry.source == str(path.resolve())
    assert entry.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert entry.fingerprint == fingerprint_file(path)
    assert entry.description == "Alpha does things.\n\nAt length."
    assert entry.spec.entry_node == "done"
    # Several specs in one file (and an alias of one of them) are each registered once.
    assert sorted(loaded.registry) == ["alpha", "two_a", "two_b"]
    assert loaded.entry("two_a").source == loaded.entry("two_b").source
    assert loaded.duplicates == {}

    rt = make_runtime(loaded)
    run = start(rt, loaded, "alpha")
    assert run.output == {"from": "alpha"}
    # The run remembers where its workflow came from and which version of it.
    assert run.workflow_source == entry.source
    assert run.workflow_fingerprint == entry.fingerprint


def test_fingerprint_changes_when_the_file_changes_and_reload_runs_new_code(wfdir: Path) -> None:
    path = write(wfdir, "alpha.py", simple("alpha"))
    write(wfdir, "_helpers.py", "VALUE = 1\n")
    write(wfdir, "beta.py", """
        from abstractrt_cli import StepPlan, WorkflowSpec
        import _helpers
        def n(run, ctx):
            return StepPlan("n", complete_output={"v": _helpers.VALUE})

        BETA = WorkflowSpec("beta", "n", {"n": n})
    """)
    first = load_workflows(wfdir)
    old = first.entry("alpha").fingerprint

    path.write_text(path.read_text().replace('{"from": "alpha"}', '{"from": "alpha v2"}'))
    write(wfdir, "_helpers.py", "VALUE = 2\n")
    second = load_workflows(wfdir)

    assert second.entry("alpha").fingerprint != old
    assert second.entry("beta").fingerprint == first.entry("beta").fingerprint
    rt = make_runtime(second)
    assert start(rt, second, "alpha").output == {"from": "alpha v2"}
    assert start(rt, second, "beta").output == {"v": 2}  # the helper is not a stale copy


def test_two_directories_each_get_their_own_helpers(tmp_path: Path) -> None:
    loads = {}
    for name in ("one", "two"):
        d = tmp_path / name
        d.mkdir()
        write(d, "_helpers.py", f"NAME = {name!r}\n")
        write(d, "wf.py", f"""
            from abstractrt_cli import StepPlan, WorkflowSpec
            from _helpers import NAME
            def n(run, ctx):
                return StepPlan("n", complete_output={{"name": NAME}})

            WF = WorkflowSpec("wf_{name}", "n", {{"n": n}})
        """)
        loads[name] = load_workflows(d)
    loads["again_one"] = load_workflows(tmp_path / "one")

    for key, wid, expected in (("one", "wf_one", "one"), ("two", "wf_two", "two"),
                               ("again_one", "wf_one", "one")):
        rt = make_runtime(loads[key])
        assert start(rt, loads[key], wid).output == {"name": expected}, key


def test_print_at_import_goes_to_stderr_not_stdout(wfdir: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    # stdout belongs to `--json`'s one document.
    write(wfdir, "chatty.py", "print('loading chatty')\n" + simple("chatty"))
    loaded = load_workflows(wfdir)
    assert "chatty" in loaded.registry
    out, err = capsys.readouterr()
    assert out == "" and "loading chatty" in err


# --------------------------------------------------------------------------- look-alikes


LOOKALIKE = '''
"""Written against no library at all: duck-typed spec, plans and effects."""
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional


class Kind(Enum):  # a plain Enum (not a str): the runtime must read ``.value``
    ASK_USER = "ask_user"
    WAIT_UNTIL = "wait_until"


@dataclass
class Effect:
    type: Any
    payload: dict = field(default_factory=dict)
    result_key: Optional[str] = None


@dataclass
class Plan:
    node_id: str
    effect: Optional[Effect] = None
    next_node: Optional[str] = None
    complete_output: Optional[dict] = None


class Spec:
    def __init__(self, workflow_id, entry_node, nodes):
        self.workflow_id = workflow_id
        self.entry_node = entry_node
        self.nodes = nodes


class NotASpec:  # the class itself has the attributes, but classes never count
    workflow_id = "class_attr"
    entry_node = "x"
    nodes = {}


def ask(run, ctx):
    return Plan("ask", effect=Effect(Kind.ASK_USER, {"prompt": "Name?"}, "answer"),
                next_node="timer")


def timer(run, ctx):
    return Plan("timer", effect=Effect(Kind.WAIT_UNTIL, {"until": "2000-01-01T00:00:00Z"}, "t"),
                next_node="shout")


def shout(run, ctx):
    return Plan("shout", effect=Effect("shout", {"text": run.vars["answer"]["response"]}, "loud"),
                next_node="hop")


def hop(run, ctx):
    return Plan("hop", next_node="end")


def end(run, ctx):
    return Plan("end", complete_output={"loud": run.vars["loud"]["text"],
                                        "t": run.vars["t"]["ready"]})


def do_shout(run, effect, default_next_node):
    return {"text": effect.payload["text"].upper()}


EFFECT_HANDLERS = {"shout": do_shout}

LOOK = Spec("look", "ask", {"ask": ask, "timer": timer, "shout": shout, "hop": hop, "end": end})
'''


def test_lookalike_spec_plans_and_effects_run_through_our_runtime(wfdir: Path) -> None:
    write(wfdir, "look.py", LOOKALIKE)
    loaded = load_workflows(wfdir)

    assert loaded.broken == []
    assert list(loaded.registry) == ["look"]  # NotASpec (a class) is not a workflow
    rt = make_runtime(loaded)
    run = start(rt, loaded, "look")
    assert run.status == RunStatus.WAITING, run.error
    assert run.waiting is not None and run.waiting.reason == WaitReason.USER
    assert run.waiting.prompt == "Name?"

    run = rt.resume(run_id=run.run_id, payload={"response": "ada"})

    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == {"loud": "ADA", "t": True}
    assert [t for t, s, a in effect_attempts(rt, run.run_id)] == ["ask_user", "wait_until", "shout"]


# --------------------------------------------------------------------------- AbstractRuntime


ABSTRACTRUNTIME_MODULE = '''
"""Written for AbstractRuntime 0.2.0 itself, unchanged."""
from abstractruntime import (Effect, EffectType, RetryPolicy, StepPlan, WaitReason, WaitState,
                             WorkflowSpec)
from abstractruntime.core.runtime import EffectOutcome

CALLS = []


def ask(run, ctx):
    return StepPlan(node_id="ask",
                    effect=Effect(type=EffectType.ASK_USER,
                                  payload={"prompt": "Deploy?", "choices": ["yes", "no"],
                                           "allow_free_text": False},
                                  result_key="approval"),
                    next_node="tool")


def tool(run, ctx):
    return StepPlan(node_id="tool",
                    effect=Effect(type=EffectType.TOOL_CALLS, payload={"calls": ["deploy"]},
                                  result_key="tool"),
                    next_node="llm")


def llm(run, ctx):
    return StepPlan(node_id="llm",
                    effect=Effect(type=EffectType.LLM_CALL, payload={"prompt": "summarise"},
                                  result_key="summary"),
                    next_node="child")


def child(run, ctx):
    return StepPlan(node_id="child",
                    effect=Effect(type=EffectType.START_SUBWORKFLOW,
                                  payload={"workflow_id": "ar_child", "vars": {"n": 2}},
                                  result_key="sub"),
                    next_node="later")


def later(run, ctx):
    return StepPlan(node_id="later",
                    effect=Effect(type=EffectType.WAIT_UNTIL,
                                  payload={"until": "2000-01-01T00:00:00+00:00"}),
                    next_node="done")


def done(run, ctx):
    return StepPlan(node_id="done", complete_output={
        "approval": run.vars["approval"]["response"],
        "tool": run.vars["tool"],
        "summary": run.vars["summary"]["text"],
        "child": run.vars["sub"]["output"],
        "at": ctx.now_iso()[:4],
    })


def double(run, ctx):
    return StepPlan(node_id="double", complete_output={"n": run.vars["n"] * 2})


def flaky_tools(run, effect, default_next_node):
    CALLS.append(effect.payload)
    if len(CALLS) == 1:
        return EffectOutcome.failed("tool server hiccup")
    return EffectOutcome.completed({"ran": effect.payload["calls"]})


def queue_llm(run, effect):  # the older two-argument form
    return EffectOutcome.waiting(WaitState(reason=WaitReason.JOB, wait_key="llm:" + run.run_id,
                                           details={"queued": effect.payload["prompt"]}))


EFFECT_HANDLERS = {EffectType.TOOL_CALLS: flaky_tools, EffectType.LLM_CALL: queue_llm}
EFFECT_POLICY = RetryPolicy(tool_max_attempts=2, backoff_base=0.0)

PARENT = WorkflowSpec(workflow_id="ar_parent", entry_node="ask",
                      nodes={"ask": ask, "tool": tool, "llm": llm, "child": child,
                             "later": later, "done": done})
CHILD = WorkflowSpec(workflow_id="ar_child", entry_node="double", nodes={"double": double})
'''


def test_abstractruntime_workflow_module_runs_unchanged(wfdir: Path) -> None:
    pytest.importorskip("abstractruntime")
    write(wfdir, "ar_flow.py", ABSTRACTRUNTIME_MODULE)
    loaded = load_workflows(wfdir)

    assert loaded.broken == []
    assert list(loaded.registry) == ["ar_child", "ar_parent"]
    entry = loaded.entry("ar_parent")
    assert entry.effect_handlers.keys() == {"tool_calls", "llm_call"}  # by the enum's value
    rt = make_runtime(loaded)
    run = start(rt, loaded, "ar_parent")
    assert run.status == RunStatus.WAITING, run.error
    assert run.waiting is not None and run.waiting.choices == ["yes", "no"]

    run = rt.resume(run_id=run.run_id, payload={"response": "yes"})
    # The LLM handler answered with AbstractRuntime's own waiting outcome.
    assert run.status == RunStatus.WAITING, run.error
    assert run.waiting is not None and run.waiting.reason == WaitReason.JOB
    assert run.waiting.wait_key == "llm:" + run.run_id
    assert run.waiting.details == {"queued": "summarise"}

    run = rt.resume(run_id=run.run_id, payload={"text": "all good"},
                    wait_key="llm:" + run.run_id)

    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == {"approval": "yes", "tool": {"ran": ["deploy"]}, "summary": "all good",
                          "child": {"n": 4}, "at": run.output["at"]}
    attempts = effect_attempts(rt, run.run_id)
    assert ("tool_calls", "failed", 1) in attempts
    assert ("tool_calls", "completed", 2) in attempts
    assert [t for t, s, a in attempts if s == "completed"] == [
        "tool_calls", "start_subworkflow", "wait_until"]
    assert ("llm_call", "waiting", 1) in attempts


# --------------------------------------------------------------------------- EFFECT_HANDLERS


HANDLERS_MODULE = '''
from abstractrt_cli import (Effect, EffectOutcome, RetryPolicy, StepPlan, WaitReason, WaitState,
                            WorkflowSpec)

CALLS = {"three": 0, "two": 0, "flaky": 0, "always": 0, "outcome": 0}


def three_args(run, effect, default_next_node):
    CALLS["three"] += 1
    return {"args": 3, "next": default_next_node}


def two_args(run, effect):
    CALLS["two"] += 1
    return {"args": 2, "echo": effect.payload["x"]}


def flaky(run, effect, default_next_node):
    CALLS["flaky"] += 1
    if CALLS["flaky"] < 3:
        raise ConnectionError(f"try {CALLS['flaky']}")
    return {"ok": CALLS["flaky"]}


def always_fails(run, effect):
    CALLS["always"] += 1
    raise ValueError("broken tool")


def gives_outcome(run, effect, default_next_node):
    CALLS["outcome"] += 1
    kind = effect.payload["kind"]
    if kind == "completed":
        return EffectOutcome.completed({"via": "outcome"})
    if kind == "waiting":
        return EffectOutcome.waiting(WaitState(reason=WaitReason.JOB, wait_key="job:custom",
                                               details={"why": "external"}))
    return EffectOutcome.failed("refused", retryable=False)


EFFECT_HANDLERS = {"three": three_args, "two": two_args, "flaky": flaky,
                   "always": always_fails, "outcome": gives_outcome}
EFFECT_POLICY = RetryPolicy(backoff_base=0.0, effect_max_attempts={
    "flaky": 3, "always": 3, "outcome": 5})


def step(etype, payload=None, nxt="end"):
    def node(run, ctx):
        return StepPlan(node_id="go", effect=Effect(etype, payload or {}, "res"), next_node=nxt)
    return node


def end(run, ctx):
    return StepPlan(node_id="end", complete_output={"res": run.vars.get("res")})


def wf(wid, etype, payload=None):
    return WorkflowSpec(wid, "go", {"go": step(etype, payload), "end": end})


THREE = wf("h_three", "three")
TWO = wf("h_two", "two", {"x": "hi"})
FLAKY = wf("h_flaky", "flaky")
ALWAYS = wf("h_always", "always")
OUT_DONE = wf("h_out_completed", "outcome", {"kind": "completed"})
OUT_WAIT = wf("h_out_waiting", "outcome", {"kind": "waiting"})
OUT_FAIL = wf("h_out_failed", "outcome", {"kind": "failed"})
'''


@pytest.fixture
def handlers(wfdir: Path) -> LoadedWorkflows:
    write(wfdir, "handlers.py", HANDLERS_MODULE)
    loaded = load_workflows(wfdir)
    assert loaded.broken == []
    return loaded


def module_calls(loaded: LoadedWorkflows) -> Dict[str, int]:
    return loaded.entry("h_three").spec.nodes["go"].__globals__["CALLS"]


def test_handler_with_three_args_gets_the_default_next_node(handlers: LoadedWorkflows) -> None:
    rt = make_runtime(handlers)
    run = start(rt, handlers, "h_three")
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == {"res": {"args": 3, "next": "end"}}


def test_handler_with_two_args(handlers: LoadedWorkflows) -> None:
    rt = make_runtime(handlers)
    run = start(rt, handlers, "h_two")
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == {"res": {"args": 2, "echo": "hi"}}


def test_raising_handler_is_retried_per_the_module_policy(handlers: LoadedWorkflows) -> None:
    rt = make_runtime(handlers)
    run = start(rt, handlers, "h_flaky")
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output == {"res": {"ok": 3}}
    assert effect_attempts(rt, run.run_id) == [
        ("flaky", "failed", 1), ("flaky", "failed", 2), ("flaky", "completed", 3)]
    errors = [r["error"] for r in rt.get_ledger(run.run_id) if r["status"] == "failed"]
    assert errors == ["ConnectionError: try 1", "ConnectionError: try 2"]


def test_handler_failing_every_attempt_fails_the_run(handlers: LoadedWorkflows) -> None:
    rt = make_runtime(handlers)
    run = start(rt, handlers, "h_always")
    assert run.status == RunStatus.FAILED
    assert "after 3 attempts" in (run.error or "") and "broken tool" in (run.error or "")
    assert module_calls(handlers)["always"] == 3


def test_effect_outcomes_are_used_as_they_are(handlers: LoadedWorkflows) -> None:
    rt = make_runtime(handlers)
    done = start(rt, handlers, "h_out_completed")
    assert done.output == {"res": {"via": "outcome"}}

    waiting = start(rt, handlers, "h_out_waiting")
    assert waiting.status == RunStatus.WAITING
    assert waiting.waiting is not None
    assert (waiting.waiting.reason, waiting.waiting.wait_key) == (WaitReason.JOB, "job:custom")
    finished = rt.resume(run_id=waiting.run_id, payload={"answer": 42}, wait_key="job:custom")
    assert finished.output == {"res": {"answer": 42}}

    before = module_calls(handlers)["outcome"]
    failed = start(rt, handlers, "h_out_failed")
    assert failed.status == RunStatus.FAILED
    assert "refused" in (failed.error or "")
    # retryable=False is honoured although the policy allows 5 attempts.
    assert module_calls(handlers)["outcome"] == before + 1


OTHER_MODULE = '''
from abstractrt_cli import Effect, StepPlan, WorkflowSpec

CALLS = []


def own_fails(run, effect):
    CALLS.append(1)
    raise RuntimeError("no luck")


EFFECT_HANDLERS = {"own": own_fails}


def go(etype):
    def node(run, ctx):
        return StepPlan("go", effect=Effect(etype, {"q": 1}, "res"), next_node="end")
    return node


def end(run, ctx):
    return StepPlan("end", complete_output={"res": run.vars.get("res")})


# Not named TOOLS: that module-level name is the tools of tool_calls (PRODUCT §10).
TOOL_WF = WorkflowSpec("o_tools", "go", {"go": go("tool_calls"), "end": end})
THREE = WorkflowSpec("o_three", "go", {"go": go("three"), "end": end})
OWN = WorkflowSpec("o_own", "go", {"go": go("own"), "end": end})
'''


def test_effect_handlers_and_policy_belong_to_their_module_only(wfdir: Path) -> None:
    write(wfdir, "handlers.py", HANDLERS_MODULE.replace(
        'EFFECT_HANDLERS = {', 'EFFECT_HANDLERS = {"tool_calls": three_args, "own": three_args, '))
    write(wfdir, "other.py", OTHER_MODULE)
    loaded = load_workflows(wfdir)
    assert loaded.broken == []
    assert loaded.entry("o_tools").effect_handlers.keys() == {"own"}
    assert loaded.entry("o_own").effect_policy is None
    rt = make_runtime(loaded)

    # tool_calls has a handler in handlers.py, not here: passed through (reason job).
    tools = start(rt, loaded, "o_tools")
    assert tools.status == RunStatus.WAITING, tools.error
    assert tools.waiting is not None and tools.waiting.reason == WaitReason.JOB
    assert tools.waiting.details == {"effect_type": "tool_calls", "request": {"q": 1}}

    # A custom type handled only by the other module: no handler here.
    three = start(rt, loaded, "o_three")
    assert three.status == RunStatus.FAILED
    assert "no effect handler registered for 'three'" in (three.error or "")

    # This module's own handler is used (not handlers.py's one for "own"), with the
    # runtime's default policy (one attempt), not handlers.py's retries.
    own = start(rt, loaded, "o_own")
    assert own.status == RunStatus.FAILED
    assert "no luck" in (own.error or "")
    assert effect_attempts(rt, own.run_id) == [("own", "failed", 1)]

    # And handlers.py's workflows still get their own handler for tool_calls.
    assert loaded.entry("h_three").effect_handlers["tool_calls"].__name__ == "three_args"


# --------------------------------------------------------------------------- broken files


BROKEN = {
    "syntax.py": ("x = 1\ny = 2\ndef broken(:\n    pass\n", "SyntaxError", 3),
    "imports.py": ("import os\nimport no_such_module_abstractrt_test\n", "ModuleNotFoundError", 2),
    "raises.py": ("import os\n\n\nVALUE = 1 / 0\n", "ZeroDivisionError", 4),
    "exits.py": ("import sys\nsys.exit(3)\n", "SystemExit", 2),
    "exits_bare.py": ("import sys\n\nsys.exit()\n", "SystemExit", 3),
    "multiline.py": ("raise RuntimeError('first line\\nsecond line')\n", "RuntimeError", 1),
}


def test_broken_files_are_listed_with_a_one_line_error_and_hide_nothing(wfdir: Path) -> None:
    for name, (source, _, _) in BROKEN.items():
        write(wfdir, name, source)
    write(wfdir, "good.py", simple("good"))
    write(wfdir, "zzz_after.py", simple("after"))

    loaded = load_workflows(wfdir)

    assert sorted(loaded.registry) == ["after", "good"]
    by_name = {Path(b.path).name: b for b in loaded.broken}
    assert sorted(by_name) == sorted(BROKEN)
    for name, (_, kind, line) in BROKEN.items():
        b = by_name[name]
        assert Path(b.path).is_absolute()
        assert b.error.startswith(kind), b.error
        assert f"line {line})" in b.error, b.error
        assert "\n" not in b.error
    assert "no_such_module_abstractrt_test" in by_name["imports.py"].error
    assert by_name["exits.py"].error == "SystemExit: 3 (line 2)"
    assert by_name["multiline.py"].error == "RuntimeError: first line (line 1)"
    rt = make_runtime(loaded)
    assert start(rt, loaded, "good").output == {"from": "good"}


def test_syntax_error_in_an_imported_helper_names_the_helper(wfdir: Path) -> None:
    write(wfdir, "_helpers.py", "def ok():\n    return 1\n\ndef bad(:\n")
    write(wfdir, "uses.py", "import _helpers\n")
    loaded = load_workflows(wfdir)
    [b] = loaded.broken
    assert Path(b.path).name == "uses.py"
    assert b.error.startswith("SyntaxError: "), b.error
    assert b.error.endswith("(_helpers.py, line 4)"), b.error


@pytest.mark.parametrize("tail, words", [
    ("EFFECT_HANDLERS = [1, 2]", ["EFFECT_HANDLERS must be a dict"]),
    ("EFFECT_HANDLERS = {'tool_calls': 'not a function'}", ["EFFECT_HANDLERS", "tool_calls"]),
    ("EFFECT_POLICY = 5", ["EFFECT_POLICY", "int", "idempotency_key"]),
    ("EFFECT_POLICY = {'tool_calls': 3}", ["EFFECT_POLICY", "dict", "max_attempts"]),
])
def test_bad_effect_handlers_or_policy_make_the_file_broken(wfdir: Path, tail: str,
                                                            words: list) -> None:
    # Caught at load time: the runtime would only trip over them in the middle of a tick.
    write(wfdir, "bad.py", simple("bad") + "\n" + tail + "\n")
    write(wfdir, "good.py", simple("good"))
    loaded = load_workflows(wfdir)
    assert list(loaded.registry) == ["good"]
    [b] = loaded.broken
    assert Path(b.path).name == "bad.py"
    for word in words:
        assert word in b.error, b.error


def test_file_that_python_cannot_even_read(wfdir: Path) -> None:
    (wfdir / "nul.py").write_bytes(b"x = 1\x00\n")
    (wfdir / "latin1.py").write_bytes(b"x = 'caf\xe9'\n")
    loaded = load_workflows(wfdir)
    errors = {Path(b.path).name: b.error for b in loaded.broken}
    assert sorted(errors) == ["latin1.py", "nul.py"]
    assert all("None" not in e and "\n" not in e for e in errors.values()), errors
    assert errors["latin1.py"].startswith("SyntaxError: ") and errors["latin1.py"].endswith("(line 1)")
    # Python 3.11 reports a NUL byte as a SyntaxError, 3.10 as a ValueError: both name it.
    assert errors["nul.py"].startswith(("SyntaxError: ", "ValueError: ")), errors
    assert "null bytes" in errors["nul.py"], errors


def test_asking_for_a_missing_workflow_when_files_are_broken_names_them(wfdir: Path) -> None:
    write(wfdir, "good.py", simple("good"))
    write(wfdir, "raises.py", BROKEN["raises.py"][0])
    write(wfdir, "syntax.py", BROKEN["syntax.py"][0])
    loaded = load_workflows(wfdir)

    with pytest.raises(WorkflowLoadError) as info:
        loaded.entry("lives_in_raises")
    msg = str(info.value)
    assert "lives_in_raises" in msg
    assert "raises.py" in msg and "ZeroDivisionError" in msg and "line 4" in msg
    assert "syntax.py" in msg and "SyntaxError" in msg
    assert info.value.exit_code == 1
    assert loaded.entry("good").spec.workflow_id == "good"


# --------------------------------------------------------------------------- duplicates


def test_same_workflow_id_in_two_files_names_both_and_spares_other_ids(wfdir: Path) -> None:
    one = write(wfdir, "one.py", simple("same", var="A") + simple("only_one", var="B"))
    two = write(wfdir, "two.py", simple("same") + """
from abstractrt_cli import Effect, EffectType

def call(run, ctx):
    effect = Effect(EffectType.START_SUBWORKFLOW, {"workflow_id": "same"}, "sub")
    return StepPlan("call", effect=effect, next_node="done")

CALLER = WorkflowSpec("caller", "call", {"call": call, "done": done})
""")
    loaded = load_workflows(wfdir)

    with pytest.raises(DuplicateWorkflowError) as info:
        loaded.entry("same")
    assert str(one.resolve()) in str(info.value) and str(two.resolve()) in str(info.value)
    assert info.value.exit_code == 1
    assert loaded.entry("only_one").source == str(one.resolve())
    # The ambiguous id cannot run at all, not even as a subworkflow.
    assert "same" not in loaded.registry
    rt = make_runtime(loaded)
    caller = start(rt, loaded, "caller")
    assert caller.status == RunStatus.FAILED
    assert "'same'" in (caller.error or "")
    # Listed once, as an error.
    rows = [r for r in describe(loaded) if r["workflow_id"] == "same"]
    assert len(rows) == 1 and rows[0]["error"] == str(info.value)


# --------------------------------------------------------------------------- no directory


def test_missing_workflows_directory_loads_nothing_and_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dir"
    loaded = load_workflows(missing)
    assert list(loaded.registry) == [] and loaded.broken == [] and describe(loaded) == []
    with pytest.raises(UnknownWorkflowError) as info:
        loaded.entry("anything")
    assert "does not exist" in str(info.value)
    assert str(missing) in str(info.value)
    assert not missing.exists()


def test_unknown_workflow_in_an_existing_directory_lists_known_ones(wfdir: Path) -> None:
    write(wfdir, "alpha.py", simple("alpha"))
    loaded = load_workflows(wfdir)
    with pytest.raises(UnknownWorkflowError) as info:
        loaded.entry("beta")
    assert "does not exist" not in str(info.value)
    assert "no such workflow: beta" in str(info.value)
    assert info.value.hint is not None and "alpha" in info.value.hint


# --------------------------------------------------------------------------- describe


def test_describe_shape(wfdir: Path) -> None:
    write(wfdir, "b_flow.py", simple("b_flow", doc="B flow.") + """
def extra(run, ctx):
    return StepPlan("extra", next_node="done")

def handler(run, effect):
    return {}

MORE = WorkflowSpec("a_flow", "extra", {"extra": extra, "done": done})
EFFECT_HANDLERS = {"zeta": handler, "alpha": handler}
""")
    write(wfdir, "broken.py", "import no_such_module_abstractrt_test\n")
    write(wfdir, "d1.py", simple("dup"))
    write(wfdir, "d2.py", simple("dup"))
    loaded = load_workflows(wfdir)

    rows = describe(loaded)

    keys = {"workflow_id", "entry_node", "nodes", "source", "description", "effect_handlers",
            "tools", "tool_approval", "error"}
    assert all(set(r) == keys for r in rows)
    assert rows[0] == {
        "workflow_id": "a_flow", "entry_node": "extra", "nodes": ["extra", "done"],
        "source": str((wfdir / "b_flow.py").resolve()), "description": "B flow.",
        "effect_handlers": ["alpha", "zeta"], "tools": [], "tool_approval": {}, "error": None,
    }
    assert rows[1]["workflow_id"] == "b_flow" and rows[1]["nodes"] == ["done"]
    assert rows[2]["workflow_id"] == "dup" and "defined twice" in rows[2]["error"]
    assert rows[3]["workflow_id"] is None
    assert rows[3]["source"] == str((wfdir / "broken.py").resolve())
    assert rows[3]["error"].startswith("ModuleNotFoundError")
    assert len(rows) == 4
