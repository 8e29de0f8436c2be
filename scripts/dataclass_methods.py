"""Write out the ``__init__`` of the package's hot-path dataclasses, so importing them is cheap.

Why, and what the classes inherit instead of the generated methods: ``core/dc.py``. The
``__init__`` is generated from the fields in the source, between two marker lines, with
``@dataclass``'s signature and defaults (``default_factory`` too, through ``FACTORY``)
and its ``__post_init__`` call; a frozen class (base ``Frozen``) sets its fields with
``object.__setattr__``.

    python scripts/dataclass_methods.py            # rewrite every marked class's __init__
    python scripts/dataclass_methods.py --check    # exit 1 if one is out of date (tests)
    python scripts/dataclass_methods.py --convert FILE...  # mark @dataclass classes
                                                  # (then import FACTORY, Plain, Frozen
                                                  # from core/dc.py, and list FILE in FILES)

After adding, removing or reordering a field of a marked class, run it again
(``tests/test_models.py`` fails until you do).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "abstractrt_cli"
BEGIN = "    # --- __init__ written out by scripts/dataclass_methods.py from the fields ({kind}) ---"
END = "    # --- end of the written-out __init__ ---"
DECORATOR = "@dataclass(init=False, repr=False, eq=False)"

# The marked files: every class in them whose decorator is DECORATOR.
FILES = [
    "core/models.py", "core/spec.py", "core/outcome.py", "core/config.py", "core/effects.py",
    "core/policy.py", "core/runtime.py", "settings.py", "loader.py", "storage/base.py",
    "storage/rules.py",
]


class Field:
    def __init__(self, name: str, annotation: str, default: Optional[str],
                 factory: Optional[str]) -> None:
        self.name, self.annotation, self.default, self.factory = name, annotation, default, factory


def _fields(src: str, cls: ast.ClassDef) -> List[Field]:
    out = []
    for stmt in cls.body:
        if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
            continue
        ann = ast.get_source_segment(src, stmt.annotation) or ast.unparse(stmt.annotation)
        if ann.startswith(("ClassVar", "typing.ClassVar")):
            continue
        default = factory = None
        if stmt.value is not None:
            value = stmt.value
            if isinstance(value, ast.Call) and ast.unparse(value.func) == "field":
                for kw in value.keywords:
                    text = ast.get_source_segment(src, kw.value) or ast.unparse(kw.value)
                    if kw.arg == "default_factory":
                        factory = text
                    elif kw.arg == "default":
                        default = text
                    else:
                        raise SystemExit(f"{cls.name}.{stmt.target.id}: field({kw.arg}=...) "
                                         "is not supported; keep @dataclass for this class")
            else:
                default = ast.get_source_segment(src, value) or ast.unparse(value)
        out.append(Field(stmt.target.id, ann, default, factory))
    return out


def _init_lines(cls: ast.ClassDef, fields: List[Field], frozen: bool) -> List[str]:
    """The marked block: ``__init__`` as ``@dataclass`` would make it, between the markers."""
    has_post_init = any(isinstance(s, ast.FunctionDef) and s.name == "__post_init__"
                        for s in cls.body)
    params = ["self"]
    body = []
    for f in fields:
        if f.factory is not None:
            params.append(f"{f.name}: {f.annotation} = FACTORY")
            value = f"{f.factory}() if {f.name} is FACTORY else {f.name}"
        elif f.default is not None:
            params.append(f"{f.name}: {f.annotation} = {f.default}")
            value = f.name
        else:
            params.append(f"{f.name}: {f.annotation}")
            value = f.name
        if frozen:
            body.append(f"        object.__setattr__(self, {f.name!r}, {value})")
        else:
            body.append(f"        self.{f.name} = {value}")
    if has_post_init:
        body.append("        self.__post_init__()")
    if not body:
        body.append("        pass")
    lines = [BEGIN.format(kind="frozen" if frozen else "plain")]
    signature = "    def __init__(" + ", ".join(params) + ") -> None:"
    if len(signature) > 100:
        lines += ["    def __init__("] + [f"        {p}," for p in params] + ["    ) -> None:"]
    else:
        lines.append(signature)
    lines += body
    lines.append(END)
    return lines


def _classes(src: str) -> List[Tuple[ast.ClassDef, bool, int, int]]:
    """The marked classes, frozen or not, and the lines (0-based) of their block's markers.

    A block after a class's last field is outside the class's node (comments are not
    statements): it is looked for up to the next top-level statement.
    """
    tree = ast.parse(src)
    lines = src.split("\n")
    out = []
    for i, node in enumerate(tree.body):
        if not isinstance(node, ast.ClassDef) or not any(
                ast.unparse(d) == DECORATOR[1:] for d in node.decorator_list):
            continue
        stop = tree.body[i + 1].lineno - 1 if i + 1 < len(tree.body) else len(lines)
        if i + 1 < len(tree.body) and getattr(tree.body[i + 1], "decorator_list", None):
            stop = tree.body[i + 1].decorator_list[0].lineno - 1
        begin = [j for j in range(node.lineno - 1, stop) if lines[j].startswith(BEGIN[:60])]
        end = [j for j in range(node.lineno - 1, stop) if lines[j] == END]
        if len(begin) != 1 or len(end) != 1:
            raise SystemExit(f"{node.name}: {DECORATOR} needs one written-out block")
        out.append((node, "(frozen)" in lines[begin[0]], begin[0], end[0]))
    return out


def regenerate(src: str) -> str:
    for cls, frozen, start, end in reversed(_classes(src)):  # bottom up: lines stay valid
        lines = src.split("\n")
        new = _init_lines(cls, _fields(src, cls), frozen)
        src = "\n".join(lines[:start] + new + lines[end + 1:])
    return src


def convert(src: str) -> str:
    """Mark every ``@dataclass`` / ``@dataclass(frozen=True)`` class and write its block."""
    tree = ast.parse(src)
    lines = src.split("\n")
    for node in reversed([n for n in tree.body if isinstance(n, ast.ClassDef)]):
        decos = [ast.unparse(d) for d in node.decorator_list]
        if decos not in (["dataclass"], ["dataclass(frozen=True)"]):
            continue
        frozen = decos == ["dataclass(frozen=True)"]
        last = max(s.end_lineno for s in node.body
                   if isinstance(s, ast.AnnAssign) or (isinstance(s, ast.Expr)
                                                        and isinstance(s.value, ast.Constant)))
        block = ["", BEGIN.format(kind="frozen" if frozen else "plain"), END]
        base = "Frozen" if frozen else "Plain"
        head = node.lineno - 1
        assert not node.bases, f"{node.name}: has bases already"
        lines[head] = lines[head].replace(f"class {node.name}:", f"class {node.name}({base}):")
        # (regenerate() fills it in; the comment lines after the last field stay above)
        lines[last:last] = block
        deco_line = node.decorator_list[0].lineno - 1  # the '@' line (0-based)
        lines[deco_line] = DECORATOR
    return regenerate("\n".join(lines))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--convert", nargs="+", metavar="FILE")
    args = ap.parse_args(argv)
    if args.convert:
        for name in args.convert:
            path = PACKAGE / name
            path.write_text(convert(path.read_text()))
            print(f"converted {name}")
        return 0
    stale = []
    for name in FILES:
        path = PACKAGE / name
        src = path.read_text()
        new = regenerate(src)
        if new != src:
            stale.append(name)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("written-out dataclass __init__s out of date in: " + ", ".join(stale)
              + " (run python scripts/dataclass_methods.py)", file=sys.stderr)
        return 1
    for name in stale:
        print(f"rewrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
