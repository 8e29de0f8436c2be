"""Small node builders shared by the kernel tests."""

from __future__ import annotations

from typing import Any, Dict, Optional

from abstractrt_cli import Effect, StepPlan


def node(node_id: str, *, effect: Optional[Effect] = None, next: Optional[str] = None,
         out: Optional[Dict[str, Any]] = None):
    """A node that always returns the same plan."""
    return lambda run, ctx: StepPlan(node_id, effect=effect, next_node=next, complete_output=out)


def finish(node_id: str = "end"):
    """A node that completes with the run's vars (minus ``_limits``)."""
    def handler(run, ctx):
        return StepPlan(node_id, complete_output={k: v for k, v in run.vars.items()
                                                  if k != "_limits"})
    return handler
