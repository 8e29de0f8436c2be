"""Let code written for AbstractRuntime import this package as ``abstractruntime``.

The documented line::

    import sys, abstractrt_cli.compat.abstractruntime as ar; sys.modules["abstractruntime"] = ar

makes ``import abstractruntime`` give this package. Python would then load a submodule
such as ``abstractruntime.storage.in_memory`` a second time, from our files, under the new
name: two copies of every class, and ``isinstance`` checks that fail across them. The
finder below, installed when this package is imported, hands out the module already
loaded under its real name instead. It acts only while the alias is in place, so an
installed AbstractRuntime is never shadowed by importing this package.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any, Optional, Sequence

ALIAS = "abstractruntime"
REAL = __name__.rsplit(".", 1)[0]  # abstractrt_cli.compat.abstractruntime


class _ExistingModuleLoader(importlib.abc.Loader):
    """Loads an alias name as a module that is already loaded under its real name."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self._spec = module.__spec__

    def create_module(self, spec: Any) -> ModuleType:
        return self._module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set the alias spec on the module: put its own back,
        # so the module keeps saying where it really lives.
        module.__spec__ = self._spec


class AliasFinder(importlib.abc.MetaPathFinder):
    """``abstractruntime.X`` -> ``abstractrt_cli.compat.abstractruntime.X`` while aliased."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Any:
        if not fullname.startswith(ALIAS + "."):
            return None
        if sys.modules.get(ALIAS) is not sys.modules.get(REAL):
            return None
        real_name = REAL + fullname[len(ALIAS):]
        try:
            module = importlib.import_module(real_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and real_name.startswith(exc.name):
                return None  # not part of the mirror (e.g. the AbstractCore integration)
            raise
        return importlib.util.spec_from_loader(fullname, _ExistingModuleLoader(module))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once): before the path finder, which
    would otherwise load the second copies."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
