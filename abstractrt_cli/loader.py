"""Load the workflows directory into a ``WorkflowRegistry`` (an instance, not a global).

Every ``*.py`` not starting with ``_`` is imported; every module-level ``WorkflowSpec``
(or look-alike: ``workflow_id``, ``entry_node``, ``nodes``) becomes available by id,
with the module's ``EFFECT_HANDLERS``, ``EFFECT_POLICY``, ``STEP_TIMEOUT``, ``LLM``,
``TOOLS`` and ``TOOL_APPROVAL`` (PRODUCT §10), each checked when the file is loaded. A
file that fails to import, or whose module-level settings are malformed, is kept as
broken with its error and does not hide the others; two files defining the same id make
that id unusable, with an error naming both files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Set

from .core.dc import FACTORY, Plain
from .core.sha import sha256
from .core.spec import WorkflowEntry, WorkflowRegistry, looks_like_workflow
from .errors import DuplicateWorkflowError, UnknownWorkflowError, WorkflowLoadError


@dataclass(init=False, repr=False, eq=False)
class BrokenFile(Plain):
    path: str
    error: str

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(self, path: str, error: str) -> None:
        self.path = path
        self.error = error
    # --- end of the written-out __init__ ---


@dataclass(init=False, repr=False, eq=False)
class LoadedWorkflows(Plain):
    directory: Path
    registry: WorkflowRegistry = field(default_factory=WorkflowRegistry)
    broken: List[BrokenFile] = field(default_factory=list)
    duplicates: Dict[str, DuplicateWorkflowError] = field(default_factory=dict)

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        directory: Path,
        registry: WorkflowRegistry = FACTORY,
        broken: List[BrokenFile] = FACTORY,
        duplicates: Dict[str, DuplicateWorkflowError] = FACTORY,
    ) -> None:
        self.directory = directory
        self.registry = WorkflowRegistry() if registry is FACTORY else registry
        self.broken = list() if broken is FACTORY else broken
        self.duplicates = dict() if duplicates is FACTORY else duplicates
    # --- end of the written-out __init__ ---

    def entry(self, workflow_id: str) -> WorkflowEntry:
        """The workflow's entry, or the precise error why it cannot be used."""
        if workflow_id in self.duplicates:
            raise self.duplicates[workflow_id]
        entry = self.registry.entry(workflow_id)
        if entry is not None:
            return entry
        if self.broken:
            # The id may live in a file that failed to import: say so rather than "unknown".
            names = "; ".join(f"{Path(b.path).name}: {b.error}" for b in self.broken)
            raise WorkflowLoadError(
                f"no such workflow: {workflow_id} (and {len(self.broken)} workflow file(s) "
                f"failed to import — {names})")
        if not self.directory.is_dir():
            raise UnknownWorkflowError(workflow_id, directory=str(self.directory))
        raise UnknownWorkflowError(workflow_id, list(self.registry))


def fingerprint_file(path: Path) -> str:
    return sha256(path.read_bytes()).hexdigest()[:16]


def _module_name(path: Path) -> str:
    digest = sha256(str(path.resolve()).encode()).hexdigest()[:8]
    return f"abstractrt_workflows_{path.stem}_{digest}"


def _first_line_error(exc: BaseException, path: Path) -> str:
    """``SyntaxError: invalid syntax (line 3)`` — one line, pointing into the user's file."""
    if isinstance(exc, SyntaxError):
        # In a helper the file imports, the line number is the helper's: name the helper.
        other = exc.filename and Path(exc.filename).resolve() != path.resolve()
        parts = ([Path(str(exc.filename)).name] if other else []) + (
            [f"line {exc.lineno}"] if exc.lineno else [])
        where = f" ({', '.join(parts)})" if parts else ""
        return f"{type(exc).__name__}: {exc.msg}{where}"
    import traceback  # only for a file that failed: loading stays cheap

    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    where = f" (line {line})" if line else ""
    text = str(exc).strip()
    message = f": {text.splitlines()[0]}" if text else ""  # one line, even for a long message
    return f"{type(exc).__name__}{message}{where}"


def load_workflows(directory: Path) -> LoadedWorkflows:
    """Import every workflow file of ``directory`` (a missing directory loads nothing)."""
    loaded = LoadedWorkflows(directory=directory)
    if not directory.is_dir():
        return loaded
    dir_str = str(directory.resolve())
    _prepare_imports(dir_str)
    before = set(sys.modules)
    owners: Dict[str, str] = {}
    found: Dict[str, Any] = {}  # registered after every file is read, duplicates left out
    for path in sorted(p.resolve() for p in directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            module = _import_file(path)
        except BaseException as exc:  # SystemExit and friends from a bad file too
            if isinstance(exc, KeyboardInterrupt):
                raise
            loaded.broken.append(BrokenFile(str(path), _first_line_error(exc, path)))
            continue
        _register_module(loaded, module, path, owners, found)
    _note_helpers(dir_str, before)
    for wid, (spec, kwargs) in sorted(found.items()):
        if wid not in loaded.duplicates:  # a duplicated id must not run, not even as a child
            loaded.registry.register(spec, **kwargs)
    return loaded


# Helper modules that workflow files imported from their directory (``import _helpers``).
_HELPER_MODULES: Set[str] = set()


def _prepare_imports(dir_str: str) -> None:
    """Let workflow files import their helpers from their directory, fresh each load.

    The directory goes first on ``sys.path``, and helpers imported by an earlier load are
    forgotten: another directory's ``_helpers`` must not stand in for this one's, and a
    reload must see the current code.
    """
    if dir_str in sys.path:
        sys.path.remove(dir_str)
    sys.path.insert(0, dir_str)
    for name in _HELPER_MODULES:
        sys.modules.pop(name, None)
    _HELPER_MODULES.clear()


def _note_helpers(dir_str: str, before: Set[str]) -> None:
    """Remember the modules just imported from files or packages directly in the directory."""
    for name in set(sys.modules) - before:
        file = getattr(sys.modules.get(name), "__file__", None)
        if not isinstance(file, str) or not file.startswith(dir_str + os.sep):
            continue
        first = file[len(dir_str) + 1:].split(os.sep)[0]
        top = name.split(".")[0]
        if first in (top, top + ".py"):
            _HELPER_MODULES.add(name)


def _import_file(path: Path) -> Any:
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        # A print() at import must not land in stdout, which `--json` keeps for its document.
        with contextlib.redirect_stdout(sys.stderr):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


_POLICY_METHODS = ("max_attempts", "backoff_seconds", "idempotency_key")


def _register_module(loaded: LoadedWorkflows, module: Any, path: Path, owners: Dict[str, str],
                     found: Dict[str, Any]) -> None:
    handlers = getattr(module, "EFFECT_HANDLERS", None) or {}
    policy = getattr(module, "EFFECT_POLICY", None)
    if not isinstance(handlers, dict):
        loaded.broken.append(BrokenFile(str(path), "EFFECT_HANDLERS must be a dict"))
        return
    # Checked now: the runtime would only trip over them in the middle of a tick.
    not_callable = sorted(str(k) for k, fn in handlers.items() if not callable(fn))
    if not_callable:
        loaded.broken.append(BrokenFile(
            str(path), f"EFFECT_HANDLERS: not a function for {', '.join(not_callable)}"))
        return
    missing = [m for m in _POLICY_METHODS if not callable(getattr(policy, m, None))]
    if policy is not None and missing:
        loaded.broken.append(BrokenFile(
            str(path), f"EFFECT_POLICY must be an effect policy (like RetryPolicy(...)); "
                       f"{type(policy).__name__} has no {', '.join(missing)}"))
        return
    step_timeout = getattr(module, "STEP_TIMEOUT", None)
    if step_timeout is not None and (isinstance(step_timeout, bool)
                                     or not isinstance(step_timeout, (int, float))
                                     or not step_timeout > 0):
        loaded.broken.append(BrokenFile(
            str(path), f"STEP_TIMEOUT must be a number of seconds above 0, not {step_timeout!r}"))
        return
    agent = _agent_settings(module, handlers)
    if isinstance(agent, str):
        loaded.broken.append(BrokenFile(str(path), agent))
        return
    fingerprint = fingerprint_file(path)
    doc = (module.__doc__ or "").strip() or None
    seen: set = set()
    for value in list(vars(module).values()):
        if id(value) in seen or not looks_like_workflow(value):
            continue
        seen.add(id(value))
        wid = value.workflow_id
        if wid in owners and owners[wid] != str(path):
            loaded.duplicates.setdefault(wid, DuplicateWorkflowError(wid, owners[wid], str(path)))
            continue
        owners[wid] = str(path)
        found[wid] = (value, dict(
            effect_handlers=handlers, effect_policy=policy, source=str(path),
            fingerprint=fingerprint, description=doc,
            step_timeout=float(step_timeout) if step_timeout is not None else None, **agent))


_APPROVAL_RULES = ("ask", "deny")


def _agent_settings(module: Any, handlers: Dict[Any, Any]) -> Any:
    """``LLM``, ``TOOLS`` and ``TOOL_APPROVAL`` as ``register`` takes them, or the one-line
    reason they cannot be used (checked now: a run would only trip over them mid-tick)."""
    from .core.models import effect_type_name
    from .settings import llm_problem

    llm = getattr(module, "LLM", None)
    tools = getattr(module, "TOOLS", None)
    approval = getattr(module, "TOOL_APPROVAL", None)
    handled = {effect_type_name(k) for k in handlers}
    if llm is not None:
        # A module's LLM overrides the config key key by key: base_url may come from there.
        problem = llm_problem(llm, whole=False)
        if problem:
            return f"LLM: {problem}"
        if "llm_call" in handled:
            return "LLM and EFFECT_HANDLERS['llm_call'] both answer llm_call: keep one"
    if tools is not None:
        if not isinstance(tools, dict):
            return f"TOOLS must be a dict of tool name to function, not {type(tools).__name__}"
        bad_names = sorted(repr(k) for k in tools if not isinstance(k, str) or not k)
        if bad_names:
            return f"TOOLS: a tool name must be a non-empty string, not {', '.join(bad_names)}"
        not_callable = sorted(k for k, fn in tools.items() if not callable(fn))
        if not_callable:
            return f"TOOLS: not a function for {', '.join(not_callable)}"
        if "tool_calls" in handled:
            return "TOOLS and EFFECT_HANDLERS['tool_calls'] both run tool_calls: keep one"
    if approval is not None:
        if not isinstance(approval, dict):
            return (f"TOOL_APPROVAL must be a dict of tool name to \"ask\" or \"deny\", "
                    f"not {type(approval).__name__}")
        for name, rule in approval.items():
            if rule not in _APPROVAL_RULES:
                return f"TOOL_APPROVAL[{name!r}] must be \"ask\" or \"deny\", not {rule!r}"
        unknown = sorted(str(n) for n in approval if n not in (tools or {}))
        if unknown:
            known = ", ".join(sorted(tools or {})) or "none"
            return f"TOOL_APPROVAL names {', '.join(unknown)}, not in TOOLS (tools: {known})"
    return {"llm": dict(llm) if llm else None,
            "tools": dict(tools) if tools is not None else None,
            "tool_approval": dict(approval) if approval else None}


def describe(loaded: LoadedWorkflows) -> List[Dict[str, Any]]:
    """What ``abstractrt workflows`` shows: every workflow, then every broken file.

    A workflow whose graph is broken as far as can be seen without running it (its entry
    node is not a node, or a node names a ``next_node`` that is not one) is listed with
    that error, so it is found when listing rather than in the middle of a run.
    """
    out: List[Dict[str, Any]] = []
    for wid in loaded.registry:
        e = loaded.registry.entry(wid)
        assert e is not None
        problems = check_spec(e.spec)
        out.append({
            "workflow_id": wid,
            "entry_node": e.spec.entry_node,
            "nodes": list(e.spec.nodes),
            "source": e.source,
            "description": e.description,
            "effect_handlers": sorted(e.effect_handlers),
            "tools": sorted(e.tools) if e.tools is not None else [],
            "tool_approval": dict(e.tool_approval or {}),
            "error": "; ".join(problems) if problems else None,
        })
    for wid, dup in sorted(loaded.duplicates.items()):
        out.append({"workflow_id": wid, "entry_node": None, "nodes": [], "source": dup.paths[1],
                    "description": None, "effect_handlers": [], "tools": [], "tool_approval": {},
                    "error": dup.message})
    for b in loaded.broken:
        out.append({"workflow_id": None, "entry_node": None, "nodes": [], "source": b.path,
                    "description": None, "effect_handlers": [], "tools": [], "tool_approval": {},
                    "error": b.error})
    return out


def check_spec(spec: Any) -> List[str]:
    """What is visibly wrong with a workflow's graph: a missing entry node, and every
    ``next_node`` written as a string literal in a node's own code that names no node."""
    nodes = dict(getattr(spec, "nodes", {}) or {})
    names = ", ".join(map(str, nodes)) or "none"
    problems = []
    if spec.entry_node not in nodes:
        problems.append(f"entry node {spec.entry_node!r} is not one of its nodes ({names})")
    for node_id, handler in nodes.items():
        for target, line in sorted(_next_node_literals(handler)):
            if target not in nodes:
                problems.append(f"node {node_id!r} goes to next_node {target!r} (line {line}), "
                                f"which is not one of its nodes ({names})")
    return problems


def _next_node_literals(handler: Any) -> Set[tuple]:
    """(name, line) of each ``StepPlan(..., next_node="x")`` literal in a handler's body.

    Only what the handler's own source shows: a value computed at run time, or a
    StepPlan built in a helper, cannot be checked here (the run names it if it is wrong).
    """
    import ast

    code = getattr(handler, "__code__", None)
    if code is None:
        return set()
    tree = _module_ast(code.co_filename)
    if tree is None:
        return set()
    bodies = [n for n in ast.walk(tree)
              if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
              and n.lineno == code.co_firstlineno + _decorator_offset(n)]
    if isinstance(handler, type(lambda: None)) and handler.__name__ != "<lambda>":
        bodies = [b for b in bodies if getattr(b, "name", None) == handler.__name__] or bodies
    if len(bodies) != 1:
        return set()  # several lambdas on one line: cannot tell which one this is
    found = set()
    for node in ast.walk(bodies[0]):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name != "StepPlan":
            continue
        values = [kw.value for kw in node.keywords if kw.arg == "next_node"]
        if len(node.args) >= 3:  # StepPlan(node_id, effect, next_node, ...)
            values.append(node.args[2])
        for value in values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add((value.value, value.lineno))
    return found


def _decorator_offset(node: Any) -> int:
    # A decorated function's code starts at its first decorator's line.
    decorators = getattr(node, "decorator_list", None) or []
    return node.lineno - decorators[0].lineno if decorators else 0


_AST_CACHE: Dict[str, Any] = {}


def _module_ast(filename: str) -> Any:
    if filename not in _AST_CACHE:
        import ast

        try:
            _AST_CACHE[filename] = ast.parse(Path(filename).read_text(encoding="utf-8"),
                                             filename=filename)
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
            _AST_CACHE[filename] = None
    return _AST_CACHE[filename]
