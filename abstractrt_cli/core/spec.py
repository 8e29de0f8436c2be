"""Workflow specifications, the node contract, and a registry of workflows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional, Protocol

from .dc import FACTORY, Frozen, Plain
from .models import RunState, StepPlan


class RunContext(Protocol):
    def now_iso(self) -> str: ...


NodeHandler = Callable[[RunState, RunContext], StepPlan]


@dataclass(init=False, repr=False, eq=False)
class WorkflowSpec(Frozen):
    """A graph of node handlers; ``entry_node`` is where a run starts."""

    workflow_id: str
    entry_node: str
    nodes: Dict[str, NodeHandler]

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (frozen) ---
    def __init__(self, workflow_id: str, entry_node: str, nodes: Dict[str, NodeHandler]) -> None:
        object.__setattr__(self, 'workflow_id', workflow_id)
        object.__setattr__(self, 'entry_node', entry_node)
        object.__setattr__(self, 'nodes', nodes)
    # --- end of the written-out __init__ ---

    def get_node(self, node_id: str) -> NodeHandler:
        if node_id not in self.nodes:
            raise KeyError(f"Unknown node_id '{node_id}' in workflow '{self.workflow_id}'")
        return self.nodes[node_id]


def looks_like_workflow(obj: Any) -> bool:
    """True for a WorkflowSpec or any object with its three attributes (duck typing)."""
    if isinstance(obj, type):
        return False
    try:
        return (
            isinstance(getattr(obj, "workflow_id", None), str)
            and isinstance(getattr(obj, "entry_node", None), str)
            and isinstance(getattr(obj, "nodes", None), dict)
        )
    except Exception:
        return False


@dataclass(init=False, repr=False, eq=False)
class WorkflowEntry(Plain):
    """A workflow with what came with it: its module's handlers and policy, its source."""

    spec: Any
    effect_handlers: Dict[str, Callable[..., Any]] = field(default_factory=dict)
    effect_policy: Optional[Any] = None
    source: Optional[str] = None
    fingerprint: Optional[str] = None
    description: Optional[str] = None
    # Seconds a node or effect handler of this workflow may run (module-level
    # STEP_TIMEOUT); None: the runtime's default.
    step_timeout: Optional[float] = None
    llm: Optional[Dict[str, Any]] = None  # module-level LLM = {...}
    tools: Optional[Dict[str, Callable[..., Any]]] = None  # module-level TOOLS
    tool_approval: Optional[Dict[str, str]] = None  # module-level TOOL_APPROVAL

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        spec: Any,
        effect_handlers: Dict[str, Callable[..., Any]] = FACTORY,
        effect_policy: Optional[Any] = None,
        source: Optional[str] = None,
        fingerprint: Optional[str] = None,
        description: Optional[str] = None,
        step_timeout: Optional[float] = None,
        llm: Optional[Dict[str, Any]] = None,
        tools: Optional[Dict[str, Callable[..., Any]]] = None,
        tool_approval: Optional[Dict[str, str]] = None,
    ) -> None:
        self.spec = spec
        self.effect_handlers = dict() if effect_handlers is FACTORY else effect_handlers
        self.effect_policy = effect_policy
        self.source = source
        self.fingerprint = fingerprint
        self.description = description
        self.step_timeout = step_timeout
        self.llm = llm
        self.tools = tools
        self.tool_approval = tool_approval
    # --- end of the written-out __init__ ---


class WorkflowRegistry:
    """Workflows by id; the runtime uses it for subworkflows and for resuming parents."""

    def __init__(self) -> None:
        self._entries: Dict[str, WorkflowEntry] = {}

    def register(
        self,
        spec: Any,
        *,
        effect_handlers: Optional[Dict[Any, Callable[..., Any]]] = None,
        effect_policy: Optional[Any] = None,
        source: Optional[str] = None,
        fingerprint: Optional[str] = None,
        description: Optional[str] = None,
        step_timeout: Optional[float] = None,
        llm: Optional[Dict[str, Any]] = None,
        tools: Optional[Dict[str, Callable[..., Any]]] = None,
        tool_approval: Optional[Dict[str, str]] = None,
        replace: bool = False,
    ) -> WorkflowEntry:
        """Register a workflow; an id registered already is a ValueError
        (``WorkflowAlreadyRegisteredError``) unless ``replace``."""
        from ..errors import WorkflowAlreadyRegisteredError
        from .models import effect_type_name

        if spec.workflow_id in self._entries and not replace:
            raise WorkflowAlreadyRegisteredError(spec.workflow_id)

        entry = WorkflowEntry(
            spec=spec,
            effect_handlers={effect_type_name(k): v for k, v in (effect_handlers or {}).items()},
            effect_policy=effect_policy,
            source=source,
            fingerprint=fingerprint,
            description=description,
            step_timeout=step_timeout,
            llm=llm,
            tools=tools,
            tool_approval=tool_approval,
        )
        self._entries[spec.workflow_id] = entry
        return entry

    def get(self, workflow_id: str) -> Any:
        entry = self._entries.get(workflow_id)
        return entry.spec if entry else None

    def entry(self, workflow_id: str) -> Optional[WorkflowEntry]:
        return self._entries.get(workflow_id)

    def get_or_raise(self, workflow_id: str) -> Any:
        """The workflow, or UnknownWorkflowError naming the known ones."""
        from ..errors import UnknownWorkflowError

        entry = self._entries.get(workflow_id)
        if entry is None:
            raise UnknownWorkflowError(workflow_id, self._entries)
        return entry.spec

    def unregister(self, workflow_id: str) -> None:
        from ..errors import UnknownWorkflowError

        if self._entries.pop(workflow_id, None) is None:
            raise UnknownWorkflowError(workflow_id, self._entries)

    def list_ids(self) -> list:
        return sorted(self._entries)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
