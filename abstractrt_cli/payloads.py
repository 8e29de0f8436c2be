"""Payloads from the command line: inline JSON, JSON/YAML files, stdin, k=v pairs.

Every document read here is bounded before it can cost much (PRODUCT.md §5a): its size
(16 MB by default, ``ABSTRACTRT_MAX_PAYLOAD`` to change it), its nesting depth, and,
for YAML, how far its aliases expand. NaN and Infinity are refused: they are not JSON,
and a run file holding them could not be read back by a strict JSON reader.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional, TextIO

from .errors import ConfigError, InputFileError, PayloadError, UsageError

ENV_MAX_PAYLOAD = "ABSTRACTRT_MAX_PAYLOAD"
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
MAX_DEPTH = 200  # nesting levels of objects and arrays; far beyond any real payload
MAX_YAML_ALIASES = 1000
# Nodes a YAML document may stand for once its aliases are expanded: a million is a 16 MB
# document's worth, and a "billion laughs" bomb is refused by counting, not by expanding.
MAX_YAML_EXPANDED_NODES = 1_000_000

PAYLOAD_SOURCES = "--payload JSON, --payload-file PATH|-, --answer TEXT or --set KEY=VALUE"

_SUFFIXES = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
             "g": 1024 ** 3, "gb": 1024 ** 3}


def max_payload_bytes() -> int:
    """The payload size limit: ``ABSTRACTRT_MAX_PAYLOAD`` (``16M``, ``500k``, bytes) or 16 MB."""
    raw = os.environ.get(ENV_MAX_PAYLOAD, "").strip()
    if not raw:
        return DEFAULT_MAX_PAYLOAD
    text = raw.lower().replace(" ", "")
    digits = text.rstrip("kmgb")
    suffix = text[len(digits):]
    try:
        number = float(digits)
    except ValueError:
        number = -1.0
    if suffix not in _SUFFIXES or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{ENV_MAX_PAYLOAD}={raw!r} is not a size (like 16M, 500k or 1048576)")
    return int(number * _SUFFIXES[suffix])


def _size_text(n: int) -> str:
    if n >= 1024 ** 2:
        return f"{n / 1024 ** 2:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n} bytes"


def too_big(what: str, size: Optional[int], limit: int) -> PayloadError:
    how_big = f"is {_size_text(size)}" if size is not None else "is larger than that"
    return PayloadError(f"{what} {how_big}, more than the limit of {_size_text(limit)} "
                        f"(set {ENV_MAX_PAYLOAD} to change it)")


def check_size(text: str, *, what: str = "payload") -> None:
    limit = max_payload_bytes()
    if len(text) > limit // 4:  # cheap: only text that could be over the limit is encoded
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise too_big(what, size, limit)


# ---------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400 would become Infinity: not JSON either
        raise ValueError(text)
    return value


def _not_json_number(what: str, name: str) -> PayloadError:
    return PayloadError(f"{what} holds {name}: NaN and Infinity are not JSON numbers")


def json_loads(text: str, *, what: str = "payload") -> Any:
    """Standard JSON only (no NaN/Infinity), nested at most ``MAX_DEPTH`` levels."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise _too_deep(what) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        raise _not_json_number(what, str(exc)) from None
    check_depth(value, what=what)
    return value


def _too_deep(what: str) -> PayloadError:
    return PayloadError(f"{what} is nested more than {MAX_DEPTH} levels deep")


def check_depth(value: Any, *, what: str = "payload") -> None:
    """Refuse objects and arrays nested deeper than ``MAX_DEPTH`` (iteratively: no recursion)."""
    if not isinstance(value, (dict, list)):
        return
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(what)
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):  # only containers nest: scalars need no visit
                todo.append((child, depth + 1))


def parse_json_object(text: str, *, what: str = "payload") -> Dict[str, Any]:
    check_size(text, what=what)
    try:
        value = json_loads(text, what=what)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}") from None
    return require_object(value, what=what)


def require_object(value: Any, *, what: str = "payload") -> Dict[str, Any]:
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise PayloadError(f"{what} must be a JSON object, not {kind}")
    return value


# ---------------------------------------------------------------------------- reading


def read_text(path: str, *, stdin: Optional[TextIO] = None, what: str = "payload") -> str:
    """The text of a file, or of standard input for ``-``; at most the payload size limit."""
    limit = max_payload_bytes()
    source = "standard input" if path == "-" else path
    if path == "-":
        import sys

        stream = stdin or sys.stdin
        try:
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                data = buffer.read(limit + 1)
                if len(data) > limit:
                    raise too_big(f"{what} on {source}", None, limit)
                return _decode(data, source)
            text = stream.read(limit + 1)  # a text stream (tests): characters, close enough
        except OSError as exc:
            raise InputFileError(source, exc.strerror or str(exc)) from None
        if len(text) > limit:
            raise too_big(f"{what} on {source}", None, limit)
        check_size(text, what=f"{what} on {source}")
        return text
    return _decode(read_file_bytes(path, what=what, limit=limit), path)


def read_file_bytes(path: str, *, what: str, limit: int) -> bytes:
    """A file's bytes, at most ``limit`` (PayloadError beyond), read errors as one line."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise too_big(f"{what} file {path}", size, limit)
            data = f.read(limit + 1)  # a growing file or a FIFO: never more than the limit
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a directory") from None
    except OSError as exc:
        raise InputFileError(path, exc.strerror or str(exc)) from None
    if len(data) > limit:
        raise too_big(f"{what} file {path}", None, limit)
    return data


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(source, "not UTF-8 text") from None


# ---------------------------------------------------------------------------- YAML


class _YamlLimitError(Exception):
    pass


def yaml_load(text: str, *, what: str = "payload") -> Any:
    """YAML with YAML 1.2 core scalars: ``yes``/``no``/``on``/``off`` stay strings (answers!).

    Likewise ``10:30`` stays a string (YAML 1.1 reads base 60: 630), ``010`` is 10 (not
    octal 8), and ``2026-01-01`` stays a string (a date object is not JSON: it would fail
    when the payload is stored). Depth, aliases and their expansion are bounded before
    anything is built, and ``.nan``/``.inf`` are refused.
    """
    loader = _loader_class()(text)
    try:
        try:
            node = loader.get_single_node()
        except _YamlLimitError as exc:
            raise PayloadError(f"{what} {exc}") from None
        except RecursionError:
            raise _too_deep(what) from None
        if node is None:
            return None
        try:
            _check_expansion(node)
        except _YamlLimitError as exc:
            raise PayloadError(f"{what} {exc}") from None
        try:
            return loader.construct_document(node)
        except _YamlLimitError as exc:
            raise PayloadError(f"{what} {exc}") from None
    finally:
        loader.dispose()


def _check_expansion(root: Any) -> None:
    """Count the nodes the document stands for with every alias expanded, without expanding.

    Each distinct node's expanded size is computed once (memoised on its identity), so a
    bomb of nine aliases per level costs nine steps per level, not nine to the ninth.
    """
    import yaml

    sizes: Dict[int, int] = {}
    in_progress: set = set()
    # An explicit stack: a node is first pushed to open it, then again to close it.
    stack: List[Any] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            total = 1
            for child in _children(node, yaml):
                total += sizes[id(child)]
                if total > MAX_YAML_EXPANDED_NODES:
                    raise _YamlLimitError(
                        f"expands to more than {MAX_YAML_EXPANDED_NODES:,} values through its "
                        "aliases (a YAML alias bomb?)")
            sizes[key] = total
            in_progress.discard(key)
            continue
        if key in sizes:
            continue
        if key in in_progress:
            raise _YamlLimitError("refers to itself through an alias (a recursive YAML document)")
        in_progress.add(key)
        stack.append((node, True))
        for child in _children(node, yaml):
            if id(child) in in_progress:
                raise _YamlLimitError(
                    "refers to itself through an alias (a recursive YAML document)")
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: Any, yaml: Any) -> List[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


_LOADER: Any = None


def _loader_class() -> Any:
    import re

    import yaml

    global _LOADER
    if _LOADER is not None:
        return _LOADER

    class Yaml12Loader(yaml.SafeLoader):
        """SafeLoader with YAML 1.2 core scalars and bounds on depth and aliases."""

        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._depth = 0
            self._aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_YAML_ALIASES:
                    raise _YamlLimitError(f"uses more than {MAX_YAML_ALIASES} YAML aliases")
                return super().compose_node(parent, index)
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _YamlLimitError(f"is nested more than {MAX_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    tag = "tag:yaml.org,2002:"
    dropped = {tag + t for t in ("bool", "int", "float", "timestamp", "value")}
    Yaml12Loader.yaml_implicit_resolvers = {
        ch: [r for r in resolvers if r[0] not in dropped]
        for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Yaml12Loader.add_implicit_resolver(
        tag + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    Yaml12Loader.add_implicit_resolver(
        tag + "int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
        list("-+0123456789"))
    Yaml12Loader.add_implicit_resolver(
        tag + "float",
        re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                   r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        list("-+.0123456789"))

    def construct_int(loader: Any, node: Any) -> int:
        value = str(loader.construct_scalar(node))
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value, 10)

    def construct_float(loader: Any, node: Any) -> float:
        value = yaml.SafeLoader.construct_yaml_float(loader, node)
        if not math.isfinite(value):
            raise _YamlLimitError(f"holds {loader.construct_scalar(node)}: NaN and Infinity "
                                  "are not JSON numbers")
        return value

    Yaml12Loader.add_constructor(tag + "int", construct_int)
    Yaml12Loader.add_constructor(tag + "float", construct_float)
    _LOADER = Yaml12Loader
    return _LOADER


def parse_document(text: str, *, source: str, what: str = "payload") -> Any:
    """Parse JSON, or YAML (a superset) when the text is not JSON."""
    label = f"{what} in {source}"
    check_size(text, what=label)
    try:
        return json_loads(text, what=label)
    except json.JSONDecodeError:
        pass
    import yaml

    try:
        value = yaml_load(text, what=label)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise PayloadError(f"{label} is neither valid JSON nor YAML: {problem}{where}") from None
    try:  # explicit tags (!!binary, !!set, !!timestamp) make values JSON cannot store
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{label} holds a value JSON cannot store: {exc}") from None
    return value


def load_object_file(path: str, *, stdin: Optional[TextIO] = None, what: str = "payload") -> Dict[str, Any]:
    source = "standard input" if path == "-" else path
    text = read_text(path, stdin=stdin, what=what)
    if not text.strip():
        raise PayloadError(f"{what} in {source} is empty")
    if path.lower().endswith(".json"):  # a .json file is JSON: YAML leniency would hide typos
        label = f"{what} in {source}"
        try:
            value = json_loads(text, what=label)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"{label} is not valid JSON: {exc.msg} at line "
                               f"{exc.lineno} column {exc.colno}") from None
    else:
        value = parse_document(text, source=source, what=what)
    return require_object(value, what=f"{what} in {source}")


# ---------------------------------------------------------------------------- --set


def parse_value(text: str) -> Any:
    """``3`` → 3, ``true`` → True, ``{"a":1}`` → dict, anything else stays a string."""
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (json.JSONDecodeError, ValueError, RecursionError):
        return text  # NaN/Infinity included: not standard JSON, so they stay text
    try:
        check_depth(value)
    except PayloadError:
        return text
    return value


def parse_set_pairs(pairs: List[str], *, option: str = "--set") -> Dict[str, Any]:
    """``["a=1", "b.c=x"]`` → ``{"a": 1, "b": {"c": "x"}}``."""
    return apply_set_pairs({}, pairs, option=option)


def apply_set_pairs(out: Dict[str, Any], pairs: List[str], *,
                    option: str = "--set") -> Dict[str, Any]:
    """Set each ``KEY=VALUE`` into ``out`` (dotted keys reach into nested objects)."""
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {pair!r}")
        parts = key.split(".")
        if not all(parts):
            raise UsageError(f"{option} key {key!r} has an empty part")
        if len(parts) > MAX_DEPTH:
            raise UsageError(f"{option} key {key[:40]!r}… is nested more than {MAX_DEPTH} levels")
        cur = out
        for part in parts[:-1]:
            nxt = cur.get(part)
            if not isinstance(nxt, dict):
                nxt = cur[part] = {}
            cur = nxt
        cur[parts[-1]] = parse_value(value)
    return out


def build_payload(
    *,
    payload: Optional[str] = None,
    payload_file: Optional[str] = None,
    answer: Optional[str] = None,
    sets: Optional[List[str]] = None,
    stdin: Optional[TextIO] = None,
    required: bool = True,
) -> Dict[str, Any]:
    """One payload from the mutually exclusive sources; ``--set`` pairs merge on top.

    With ``required`` (``resume``, ``emit``), giving no source at all is wrong usage: a
    silent ``{}`` once consumed an LLM job and stored an answer without its ``response``.
    ``--payload '{}'`` still sends an empty payload, on purpose.
    """
    given = [name for name, v in (("--payload", payload), ("--payload-file", payload_file),
                                  ("--answer", answer)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"use only one of {', '.join(given)}")
    if required and not given and not sets:
        raise UsageError(f"give the payload with one of {PAYLOAD_SOURCES} "
                         "(--payload '{}' sends an empty one)")
    if payload is not None:
        result = parse_json_object(payload)
    elif payload_file is not None:
        result = load_object_file(payload_file, stdin=stdin)
    elif answer is not None:
        check_size(answer, what="--answer")
        result = {"response": answer}
    else:
        result = {}
    if sets:
        apply_set_pairs(result, sets)
    return result


def build_vars(*, vars_json: Optional[str], vars_file: Optional[str], sets: Optional[List[str]],
               stdin: Optional[TextIO] = None) -> Dict[str, Any]:
    if vars_json is not None and vars_file is not None:
        raise UsageError("use only one of --vars, --vars-file")
    result: Dict[str, Any] = {}
    if vars_json is not None:
        result = parse_json_object(vars_json, what="--vars")
    elif vars_file is not None:
        result = load_object_file(vars_file, stdin=stdin, what="vars")
    if sets:
        apply_set_pairs(result, sets)
    return result
