"""The run files' JSON: indented for people, fast for the hot path."""

from __future__ import annotations

import json
from typing import Any

_compact = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
_encode_str = json.encoder.encode_basestring  # the C one where there is one


def _leaf(value: Any) -> str:
    # Most top-level fields are strings, None or ints: skip the encoder's set-up for them.
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is str:
        return _encode_str(value)
    if type(value) is int:
        return int.__repr__(value)
    return _compact(value)


def dumps_readable(obj: Any, *, depth: int = 2) -> str:
    """JSON for people: objects nested up to ``depth`` levels one key a line, deeper
    values on one line. Python's ``indent=`` encoder is pure Python and several times
    slower than this, which uses the C encoder for every leaf (it is on the hot path)."""

    def enc(value: Any, level: int) -> str:
        if (level < depth and isinstance(value, dict) and value
                and all(isinstance(k, str) for k in value)):
            pad = "  " * (level + 1)
            body = ",\n".join(f"{pad}{_encode_str(k)}: {enc(v, level + 1)}"
                               for k, v in value.items())
            return "{\n" + body + "\n" + "  " * level + "}"
        return _leaf(value)

    return enc(obj, 0) + "\n"

