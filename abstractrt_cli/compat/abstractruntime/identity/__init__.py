"""AbstractRuntime's ``identity``: actor fingerprints."""

from .fingerprint import ActorFingerprint

__all__ = ["ActorFingerprint"]
