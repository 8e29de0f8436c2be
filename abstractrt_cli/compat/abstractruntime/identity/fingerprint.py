"""AbstractRuntime's ``ActorFingerprint``: a stable id for whoever acts on runs.

A deterministic identifier, not a signature: the same kind, name and metadata always
give the same ``actor_id`` (``ar_`` + 24 hex digits of a SHA-256), which is what runs and
ledger records carry in ``actor_id``. Proof of who wrote a checkpoint is abstractrt's
signed checkpoints (``RuntimeConfig.signing_key``), not this.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from ....storage.chain import canonical_json

__all__ = ["ActorFingerprint", "sha256_hex"]


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ActorFingerprint:
    actor_id: str
    kind: str  # "agent" | "human" | "service"
    display_name: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None

    @classmethod
    def from_metadata(cls, *, kind: str, display_name: Optional[str] = None,
                      metadata: Optional[Dict[str, Any]] = None) -> "ActorFingerprint":
        """The fingerprint of these facts; the same facts give the same ``actor_id``."""
        facts = {"kind": kind, "display_name": display_name, "metadata": metadata or {}}
        actor_id = "ar_" + sha256_hex(canonical_json(facts))[:24]
        return cls(actor_id=actor_id, kind=kind, display_name=display_name, metadata=metadata or {})

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
