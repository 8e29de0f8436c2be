"""AbstractRuntime's ``core``: models, spec, runtime, policies, config and vars helpers."""

from .config import RuntimeConfig
from .models import Effect, EffectType, LimitWarning, RunState, RunStatus, StepPlan, WaitReason, WaitState
from .runtime import Runtime
from .spec import WorkflowSpec
from .vars import LIMITS, ensure_limits, get_limits

__all__ = [
    "Effect", "EffectType", "LimitWarning", "LIMITS", "RunState", "RunStatus", "Runtime",
    "RuntimeConfig", "StepPlan", "WaitReason", "WaitState", "WorkflowSpec", "ensure_limits",
    "get_limits",
]
