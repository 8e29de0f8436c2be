"""AbstractRuntime's ``core.config``: the kernel's ``RuntimeConfig``, with ``with_capabilities``."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

from ....core.config import RuntimeConfig as _KernelRuntimeConfig

__all__ = ["RuntimeConfig"]


class RuntimeConfig(_KernelRuntimeConfig):
    """Limits for new runs and runtime behaviour (see ``abstractrt_cli.core.config``)."""

    def with_capabilities(self, capabilities: Dict[str, Any]) -> "RuntimeConfig":
        """A copy whose ``model_capabilities`` are ``capabilities`` (e.g. from an LLM client)."""
        return dataclasses.replace(self, model_capabilities=dict(capabilities))
