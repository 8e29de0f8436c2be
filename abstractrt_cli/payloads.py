"""Payloads from the command line: inline JSON, JSON/YAML files, stdin, k=v pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

from .errors import InputFileError, PayloadError, UsageError


def parse_json_object(text: str, *, what: str = "payload") -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}") from None
    return require_object(value, what=what)


def require_object(value: Any, *, what: str = "payload") -> Dict[str, Any]:
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise PayloadError(f"{what} must be a JSON object, not {kind}")
    return value


def read_text(path: str, *, stdin: Optional[TextIO] = None) -> str:
    """The text of a file, or of standard input for ``-``."""
    if path == "-":
        import sys

        stream = stdin or sys.stdin
        try:
            return stream.read()
        except OSError as exc:
            raise InputFileError("standard input", exc.strerror or str(exc)) from None
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a directory") from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not UTF-8 text") from None
    except OSError as exc:
        raise InputFileError(path, exc.strerror or str(exc)) from None


def yaml_load(text: str) -> Any:
    """YAML with YAML 1.2 core scalars: ``yes``/``no``/``on``/``off`` stay strings (answers!).

    Likewise ``10:30`` stays a string (YAML 1.1 reads base 60: 630), ``010`` is 10 (not
    octal 8), and ``2026-01-01`` stays a string (a date object is not JSON: it would fail
    when the payload is stored).
    """
    import re

    import yaml

    global _LOADER
    if _LOADER is None:
        class Yaml12Loader(yaml.SafeLoader):
            pass

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

        Yaml12Loader.add_constructor(tag + "int", construct_int)
        _LOADER = Yaml12Loader
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader subclass


_LOADER: Any = None


def parse_document(text: str, *, source: str, what: str = "payload") -> Any:
    """Parse JSON, or YAML (a superset) when the text is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    import yaml

    try:
        value = yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise PayloadError(f"{what} in {source} is neither valid JSON nor YAML: "
                           f"{problem}{where}") from None
    try:  # explicit tags (!!binary, !!set, !!timestamp) make values JSON cannot store
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what} in {source} holds a value JSON cannot store: {exc}") from None
    return value


def load_object_file(path: str, *, stdin: Optional[TextIO] = None, what: str = "payload") -> Dict[str, Any]:
    source = "standard input" if path == "-" else path
    text = read_text(path, stdin=stdin)
    if not text.strip():
        raise PayloadError(f"{what} in {source} is empty")
    if path.lower().endswith(".json"):  # a .json file is JSON: YAML leniency would hide typos
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"{what} in {source} is not valid JSON: {exc.msg} at line "
                               f"{exc.lineno} column {exc.colno}") from None
    else:
        value = parse_document(text, source=source, what=what)
    return require_object(value, what=f"{what} in {source}")


def parse_value(text: str) -> Any:
    """``3`` → 3, ``true`` → True, ``{"a":1}`` → dict, anything else stays a string."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError):
        return text  # NaN/Infinity included: not standard JSON, so they stay text


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


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
) -> Dict[str, Any]:
    """One payload from the mutually exclusive sources; ``--set`` pairs merge on top."""
    given = [name for name, v in (("--payload", payload), ("--payload-file", payload_file),
                                  ("--answer", answer)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"use only one of {', '.join(given)}")
    if payload is not None:
        result = parse_json_object(payload)
    elif payload_file is not None:
        result = load_object_file(payload_file, stdin=stdin)
    elif answer is not None:
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
