"""AbstractRuntime's ``scheduler``: registry, in-process scheduler, and the bundle of both."""

from .convenience import ScheduledRuntime, create_scheduled_runtime
from .registry import WorkflowRegistry
from .scheduler import Scheduler, SchedulerStats

__all__ = ["WorkflowRegistry", "Scheduler", "SchedulerStats", "create_scheduled_runtime",
           "ScheduledRuntime"]
