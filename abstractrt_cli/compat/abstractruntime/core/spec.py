"""AbstractRuntime's ``core.spec``: the kernel's workflow specification and node contract."""

from __future__ import annotations

from ....core.spec import NodeHandler, RunContext
from ....core.spec import WorkflowSpec as _KernelWorkflowSpec

__all__ = ["NodeHandler", "RunContext", "WorkflowSpec"]


class WorkflowSpec(_KernelWorkflowSpec):
    """The kernel's ``WorkflowSpec``, with AbstractRuntime's ``is_terminal``."""

    def is_terminal(self, node_id: str) -> bool:
        """Always False: a run ends when a node returns ``complete_output``, whatever node."""
        return False
