"""SHA-256 without loading OpenSSL: the interpreter's built-in implementation.

``hashlib`` loads ``_hashlib`` (OpenSSL) on import, which costs more than the rest of a
tick's hashing put together; the ledger chain and the state digest hash small
documents, for which the built-in is as fast. Same digests either way; ``hashlib`` is the
fallback where the built-in is missing (a build without it).
"""

from __future__ import annotations

try:  # Python 3.10, 3.11
    from _sha256 import sha256
except ImportError:  # pragma: no cover - depends on the interpreter
    try:  # Python 3.12+
        from _sha2 import sha256  # type: ignore[no-redef]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment]

__all__ = ["sha256"]
