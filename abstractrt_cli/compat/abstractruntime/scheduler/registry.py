"""AbstractRuntime's ``WorkflowRegistry``: the kernel's, with AbstractRuntime's rules.

A duplicate ``register`` raises ``ValueError`` (the kernel's registry replaces); lookups
of an unknown id by ``unregister``/``get_or_raise`` raise ``KeyError``. Workflows are
registered with the kernel's options too (``effect_handlers=``, ``effect_policy=``, ...).
"""

from __future__ import annotations

from typing import Any, List

from ....core.spec import WorkflowRegistry as _KernelRegistry
from ....errors import UnknownWorkflowError
from .._errors import reworded

__all__ = ["WorkflowRegistry"]


def _not_registered(workflow_id: str) -> UnknownWorkflowError:
    return reworded(UnknownWorkflowError(workflow_id), f"Workflow '{workflow_id}' is not registered.")


class WorkflowRegistry(_KernelRegistry):
    """Workflows by id, for the runtime (subworkflows, parents) and the scheduler."""

    def unregister(self, workflow_id: str) -> None:
        if workflow_id not in self:
            raise _not_registered(workflow_id)
        del self._entries[workflow_id]

    def get_or_raise(self, workflow_id: str) -> Any:
        spec = self.get(workflow_id)
        if spec is None:
            raise _not_registered(workflow_id)
        return spec

    def list_ids(self) -> List[str]:
        """Registered workflow ids, sorted."""
        return list(self)
