"""AbstractRuntime's artifact stores: content-addressed blobs that runs refer to by id.

Large payloads live here and ``RunState.vars`` holds only ``{"$artifact": id}``. An
artifact's default id is the first 32 hex digits of its content's SHA-256 (the same
content stores once); an explicit id may be given. Each artifact also records the full
SHA-256 of its bytes (``ArtifactMetadata.sha256``): ``load`` checks it, so bytes changed
on disk are an error (``CorruptArtifactError``), never handed out as the artifact.

abstractrt's own artifact store (PRODUCT §9, ``sha256:<hex>`` refs, ``abstractrt
artifacts``) belongs to the run-lifecycle work and does not exist yet; these stores are
small and self-contained, and are to be re-based on it once it does. The file store
writes atomically (``abstractrt_cli.storage.files.atomic``), 0600 files in a 0700
directory, and never follows a symlink.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from ....core.models import utc_now_iso
from ....storage.rules import timestamp_micros
from .._errors import CorruptArtifactError, InvalidArtifactIdError
from ._files import PrivateDir

__all__ = [
    "Artifact", "ArtifactMetadata", "ArtifactStore", "InMemoryArtifactStore", "FileArtifactStore",
    "artifact_ref", "is_artifact_ref", "get_artifact_id", "resolve_artifact",
    "compute_artifact_id", "validate_artifact_id", "utc_now_iso",
]

_ARTIFACT_ID = re.compile(r"^[A-Za-z0-9_-]+$")

OnCorrupt = Optional[Callable[[CorruptArtifactError], None]]


def compute_artifact_id(content: bytes) -> str:
    """The content-addressed id of these bytes: 32 hex digits of their SHA-256."""
    return hashlib.sha256(content).hexdigest()[:32]


def validate_artifact_id(artifact_id: str) -> None:
    """Ids are letters, digits, ``-`` and ``_`` (they name files: no path can hide in one)."""
    if not isinstance(artifact_id, str) or not _ARTIFACT_ID.match(artifact_id):
        raise InvalidArtifactIdError(artifact_id if isinstance(artifact_id, str) else repr(artifact_id))


@dataclass
class ArtifactMetadata:
    artifact_id: str
    content_type: str
    size_bytes: int
    created_at: str
    run_id: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    sha256: Optional[str] = None  # hex SHA-256 of the content (beyond AbstractRuntime's fields)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ArtifactMetadata":
        return cls(
            artifact_id=data["artifact_id"],
            content_type=data["content_type"],
            size_bytes=data["size_bytes"],
            created_at=data["created_at"],
            run_id=data.get("run_id"),
            tags=data.get("tags") or {},
            sha256=data.get("sha256"),
        )


@dataclass
class Artifact:
    metadata: ArtifactMetadata
    content: bytes

    @property
    def artifact_id(self) -> str:
        return self.metadata.artifact_id

    @property
    def content_type(self) -> str:
        return self.metadata.content_type

    def as_text(self, encoding: str = "utf-8") -> str:
        return self.content.decode(encoding)

    def as_json(self) -> Any:
        return json.loads(self.content.decode("utf-8"))


def _newest_first(metas: List[ArtifactMetadata]) -> List[ArtifactMetadata]:
    return sorted(metas, key=lambda m: (timestamp_micros(m.created_at) or 0, m.artifact_id),
                  reverse=True)


def _metadata_for(content: bytes, *, content_type: str, run_id: Optional[str],
                  tags: Optional[Dict[str, str]], artifact_id: Optional[str]) -> ArtifactMetadata:
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise TypeError(f"artifact content must be bytes, not {type(content).__name__}")
    digest = hashlib.sha256(bytes(content)).hexdigest()
    artifact_id = digest[:32] if artifact_id is None else artifact_id
    validate_artifact_id(artifact_id)
    return ArtifactMetadata(artifact_id=artifact_id, content_type=content_type,
                            size_bytes=len(content), created_at=utc_now_iso(), run_id=run_id,
                            tags=dict(tags or {}), sha256=digest)


class ArtifactStore(ABC):
    """Keep, find and remove artifacts; the convenience methods build on the abstract ones."""

    @abstractmethod
    def store(self, content: bytes, *, content_type: str = "application/octet-stream",
              run_id: Optional[str] = None, tags: Optional[Dict[str, str]] = None,
              artifact_id: Optional[str] = None) -> ArtifactMetadata:
        """Keep ``content``; storing under an id that exists replaces that artifact."""

    @abstractmethod
    def load(self, artifact_id: str) -> Optional[Artifact]: ...

    @abstractmethod
    def get_metadata(self, artifact_id: str) -> Optional[ArtifactMetadata]: ...

    @abstractmethod
    def exists(self, artifact_id: str) -> bool: ...

    @abstractmethod
    def delete(self, artifact_id: str) -> bool:
        """True if it existed."""

    @abstractmethod
    def list_by_run(self, run_id: str) -> List[ArtifactMetadata]: ...

    @abstractmethod
    def list_all(self, *, limit: int = 1000) -> List[ArtifactMetadata]:
        """Newest first."""

    def delete_by_run(self, run_id: str) -> int:
        """Delete every artifact of a run; how many were deleted."""
        return sum(1 for meta in self.list_by_run(run_id) if self.delete(meta.artifact_id))

    def search(self, *, run_id: Optional[str] = None, content_type: Optional[str] = None,
               tags: Optional[Dict[str, str]] = None, limit: int = 1000) -> List[ArtifactMetadata]:
        """Filter by metadata (run, content type, every given tag), newest first."""
        found = self.list_by_run(run_id) if run_id is not None else self.list_all(limit=limit)
        if content_type is not None:
            found = [m for m in found if m.content_type == content_type]
        if tags:
            found = [m for m in found if all((m.tags or {}).get(k) == v for k, v in tags.items())]
        return _newest_first(found)[:limit]

    def store_text(self, text: str, *, content_type: str = "text/plain", encoding: str = "utf-8",
                   run_id: Optional[str] = None, tags: Optional[Dict[str, str]] = None) -> ArtifactMetadata:
        return self.store(text.encode(encoding), content_type=content_type, run_id=run_id, tags=tags)

    def store_json(self, data: Any, *, run_id: Optional[str] = None,
                   tags: Optional[Dict[str, str]] = None) -> ArtifactMetadata:
        content = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self.store(content, content_type="application/json", run_id=run_id, tags=tags)

    def load_text(self, artifact_id: str, encoding: str = "utf-8") -> Optional[str]:
        artifact = self.load(artifact_id)
        return artifact.as_text(encoding) if artifact is not None else None

    def load_json(self, artifact_id: str) -> Optional[Any]:
        artifact = self.load(artifact_id)
        return artifact.as_json() if artifact is not None else None


class InMemoryArtifactStore(ArtifactStore):
    """Artifacts in a dict (for tests and single-process use)."""

    def __init__(self) -> None:
        self._items: Dict[str, Artifact] = {}
        self._guard = threading.Lock()

    def store(self, content: bytes, *, content_type: str = "application/octet-stream",
              run_id: Optional[str] = None, tags: Optional[Dict[str, str]] = None,
              artifact_id: Optional[str] = None) -> ArtifactMetadata:
        meta = _metadata_for(content, content_type=content_type, run_id=run_id, tags=tags,
                             artifact_id=artifact_id)
        with self._guard:
            self._items[meta.artifact_id] = Artifact(metadata=meta, content=bytes(content))
        return ArtifactMetadata.from_dict(meta.to_dict())

    def load(self, artifact_id: str) -> Optional[Artifact]:
        validate_artifact_id(artifact_id)
        got = self._items.get(artifact_id)
        if got is None:
            return None
        return Artifact(metadata=ArtifactMetadata.from_dict(got.metadata.to_dict()), content=got.content)

    def get_metadata(self, artifact_id: str) -> Optional[ArtifactMetadata]:
        got = self.load(artifact_id)
        return got.metadata if got is not None else None

    def exists(self, artifact_id: str) -> bool:
        validate_artifact_id(artifact_id)
        return artifact_id in self._items

    def delete(self, artifact_id: str) -> bool:
        validate_artifact_id(artifact_id)
        with self._guard:
            return self._items.pop(artifact_id, None) is not None

    def list_by_run(self, run_id: str) -> List[ArtifactMetadata]:
        with self._guard:
            metas = [a.metadata for a in self._items.values() if a.metadata.run_id == run_id]
        return [ArtifactMetadata.from_dict(m.to_dict()) for m in metas]

    def list_all(self, *, limit: int = 1000) -> List[ArtifactMetadata]:
        with self._guard:
            metas = [a.metadata for a in self._items.values()]
        return [ArtifactMetadata.from_dict(m.to_dict()) for m in _newest_first(metas)[:max(0, limit)]]


class FileArtifactStore(ArtifactStore):
    """Artifacts as files: ``base_dir/artifacts/<id>.bin`` (the bytes) and ``<id>.meta`` (JSON).

    The content is written first and the metadata last, each atomically: an artifact
    exists once its metadata does, so a crash between the two leaves no half artifact
    (at most a ``.bin`` that the next store of the same id replaces).
    """

    def __init__(self, base_dir: Union[str, Path], *, fsync: bool = True) -> None:
        self._dir = PrivateDir(str(Path(base_dir) / "artifacts"), fsync=fsync)

    @property
    def path(self) -> str:
        return self._dir.path

    def close(self) -> None:
        self._dir.close()

    def store(self, content: bytes, *, content_type: str = "application/octet-stream",
              run_id: Optional[str] = None, tags: Optional[Dict[str, str]] = None,
              artifact_id: Optional[str] = None) -> ArtifactMetadata:
        meta = _metadata_for(content, content_type=content_type, run_id=run_id, tags=tags,
                             artifact_id=artifact_id)
        self._dir.write(f"{meta.artifact_id}.bin", bytes(content))
        doc = json.dumps(meta.to_dict(), ensure_ascii=False, indent=2) + "\n"
        self._dir.write(f"{meta.artifact_id}.meta", doc.encode("utf-8"))
        return meta

    def _read_meta(self, name: str) -> Optional[ArtifactMetadata]:
        raw = self._dir.read(name)
        if raw is None:
            return None
        try:
            return ArtifactMetadata.from_dict(json.loads(raw.decode("utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptArtifactError(name[: -len(".meta")], f"unreadable metadata ({exc})") from None

    def get_metadata(self, artifact_id: str) -> Optional[ArtifactMetadata]:
        validate_artifact_id(artifact_id)
        return self._read_meta(f"{artifact_id}.meta")

    def load(self, artifact_id: str) -> Optional[Artifact]:
        meta = self.get_metadata(artifact_id)
        if meta is None:
            return None
        content = self._dir.read(f"{artifact_id}.bin")
        if content is None:
            raise CorruptArtifactError(artifact_id, "its content file is missing")
        if meta.sha256 is not None and hashlib.sha256(content).hexdigest() != meta.sha256:
            raise CorruptArtifactError(artifact_id, "its content does not match its SHA-256")
        return Artifact(metadata=meta, content=content)

    def exists(self, artifact_id: str) -> bool:
        validate_artifact_id(artifact_id)
        return self._dir.exists(f"{artifact_id}.meta")

    def delete(self, artifact_id: str) -> bool:
        validate_artifact_id(artifact_id)
        had_meta = self._dir.remove(f"{artifact_id}.meta")  # first: it is what makes it exist
        had_bin = self._dir.remove(f"{artifact_id}.bin")
        return had_meta or had_bin

    def _all(self, on_corrupt: OnCorrupt) -> List[ArtifactMetadata]:
        metas = []
        for name in self._dir.names(".meta"):
            try:
                meta = self._read_meta(name)
            except CorruptArtifactError as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(exc)
                continue
            if meta is not None:
                metas.append(meta)
        return metas

    def list_by_run(self, run_id: str, *, on_corrupt: OnCorrupt = None) -> List[ArtifactMetadata]:
        """A run's artifacts. Unreadable metadata raises ``CorruptArtifactError``, unless
        ``on_corrupt`` is given: then it gets the error and the listing goes on."""
        return [m for m in self._all(on_corrupt) if m.run_id == run_id]

    def list_all(self, *, limit: int = 1000, on_corrupt: OnCorrupt = None) -> List[ArtifactMetadata]:
        return _newest_first(self._all(on_corrupt))[:max(0, limit)]


# References to artifacts inside RunState.vars -------------------------------------------

def artifact_ref(artifact_id: str) -> Dict[str, str]:
    """What to keep in ``run.vars`` instead of the artifact: ``{"$artifact": id}``."""
    return {"$artifact": artifact_id}


def is_artifact_ref(value: Any) -> bool:
    return isinstance(value, dict) and "$artifact" in value


def get_artifact_id(ref: Dict[str, str]) -> str:
    return ref["$artifact"]


def resolve_artifact(ref: Any, store: ArtifactStore) -> Optional[Artifact]:
    """The artifact a reference names, or None (not a reference, or no such artifact)."""
    if not is_artifact_ref(ref):
        return None
    return store.load(get_artifact_id(ref))
