"""Dataclasses whose ``__init__`` is written out (``scripts/dataclass_methods.py``).

``@dataclass`` compiles its methods from source text each time a module is imported —
about 0.7 ms a class here, 1.5 ms a frozen one, which for the twenty classes a ``tick``
imports was a tenth of the command. The hot-path classes keep the decorator (so
``fields()``, ``replace()`` and ``asdict()`` work) with ``init=False, repr=False,
eq=False``: their ``__init__`` is written out in the class body, from the bytecode cache,
and the rest comes from the bases below, which read ``__dataclass_fields__`` and behave
as ``@dataclass``'s methods do.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any, Tuple


class _Factory:
    """The default of a ``default_factory`` field in a written-out ``__init__``: the
    factory is called unless the caller gave a value (None included), as in @dataclass."""

    def __repr__(self) -> str:
        return "<factory>"


FACTORY = _Factory()


def _values(obj: Any) -> Tuple[Any, ...]:
    return tuple(getattr(obj, name) for name in obj.__dataclass_fields__)


def _frozen(obj: Any, name: str) -> bool:
    # @dataclass's rule: any name on the class itself, a field's name on a subclass.
    return "__dataclass_fields__" in type(obj).__dict__ or name in obj.__dataclass_fields__


class Plain:
    """``@dataclass``'s repr and equality (same class, fields equal); unhashable."""

    __slots__ = ()

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__)
        return f"{self.__class__.__qualname__}({parts})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self) == _values(other)

    __hash__ = None  # type: ignore[assignment]  # mutable: as @dataclass, not hashable


class Frozen(Plain):
    """``@dataclass(frozen=True)``'s: no assignment after ``__init__``, a hash of the fields."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        if _frozen(self, name):
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if _frozen(self, name):
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super().__delattr__(name)

    def __hash__(self) -> int:
        return hash(_values(self))
