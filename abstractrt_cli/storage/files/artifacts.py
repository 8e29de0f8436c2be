"""Artifacts of the file store (PRODUCT §9): content-addressed blobs.

Layout::

    artifacts/sha256/<xx>/<hex>            the bytes, written once, atomically
    artifacts/sha256/<xx>/<hex>.meta.json  their metadata (``rules.new_artifact_meta``)
    artifacts/runs/<a>/<run_id>.jsonl      the refs a run stored, one ``{"ref"}`` a line

``<hex>`` is the SHA-256 of the bytes, ``<xx>`` its first two digits. The bytes are
checked against the ref every time they are read: a damaged blob is an error naming
the file, never wrong bytes.

Storing the same bytes again merges the metadata (``rules.merge_artifact_meta``): runs
and tags are added. Writers of one ``<xx>`` directory take an ``flock`` on it, so that
two processes storing the same bytes at once keep both their runs and tags. The blob is
written (and synced) before its metadata, and deleted after it: a crash leaves at worst a
blob without metadata, which no list shows and the next put of those bytes adopts.

The refs of a run are appended to its line file before the metadata naming the run is
written, so ``list_artifacts(run_id=...)`` reads that file and the metadata it names
(what the run stored, not every artifact kept) and keeps only those whose metadata
names the run; a line whose artifact was deleted is skipped. Listing by tag alone reads
every metadata file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

from ...errors import ArtifactNotFoundError, StoreIOError
from .. import rules
from .atomic import (
    atomic_write,
    lstat_at,
    make_private_dir_at,
    open_dir,
    read_file,
    refuse_symlink,
    unlink_at,
)
from .ids import validate_run_id
from .jsonfmt import dumps_readable
from .layout import Layout
from .lines import append_lines, encode_line, read_lines
from .oserrors import mapped

T = TypeVar("T")
BASE = "artifacts/sha256"
BY_RUN = "artifacts/runs"


def hex_of(ref: Any) -> str:
    """The hex digest of a well-formed ref; ArtifactNotFoundError for anything else."""
    if not rules.is_artifact_ref(ref):
        raise ArtifactNotFoundError(str(ref))
    return ref[len("sha256:"):]


class FileArtifactStore:
    """ArtifactStore over files (see the module docstring)."""

    def __init__(self, layout: Layout, *, fsync: bool = True) -> None:
        self._layout = layout
        self._fsync = fsync

    def close(self) -> None:
        pass

    def path_of(self, ref: str) -> str:
        hx = hex_of(ref)
        return os.path.join(self._layout.root, BASE, hx[:2], hx)

    def _in_shard(self, shard: str, fn: Callable[[int], T], *, create: bool,
                  exclusive: bool = False) -> Optional[T]:
        """``fn(descriptor of artifacts/sha256/<shard>)`` (flocked if ``exclusive``)."""
        def in_base(base: int) -> Optional[T]:
            if create:
                make_private_dir_at(base, shard, fsync=self._fsync)
            try:
                fd = open_dir(shard, dir_fd=base)
            except FileNotFoundError:
                if create:
                    raise
                return None
            try:
                if exclusive:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close
                return fn(fd)
            finally:
                os.close(fd)

        return self._layout.in_dir(BASE, in_base, create=create)

    # ------------------------------------------------------------------ writes

    def put_artifact(self, data: bytes, *, content_type: str = rules.DEFAULT_CONTENT_TYPE,
                     run_id: Optional[str] = None, tags: Sequence[str] = (),
                     name: Optional[str] = None) -> Dict[str, Any]:
        """Store the bytes (durably) and return the metadata (merged if they are kept)."""
        data = rules.artifact_bytes(data, content_type, run_id, tags, name)
        if run_id is not None:
            validate_run_id(run_id)  # (before anything is written)

        def merge(old: Optional[Dict[str, Any]]) -> Dict[str, Any]:
            if old is None:
                return rules.new_artifact_meta(
                    data, content_type=content_type, run_id=run_id, tags=tags, name=name,
                    created_at=datetime.now(timezone.utc).isoformat())
            return rules.merge_artifact_meta(old, content_type=content_type, run_id=run_id,
                                             tags=tags, name=name)

        return self._put(data, merge)

    def import_artifact(self, meta: Dict[str, Any], data: bytes) -> Dict[str, Any]:
        """Keep bytes with the metadata another store gave them (``store copy``, import):
        new ones as given (their ``created_at`` too), known ones merged as puts merge."""
        data = bytes(data)
        given = rules.imported_artifact_meta(meta, data)
        for rid in given["run_ids"]:
            validate_run_id(rid)
        return self._put(data, lambda old: given if old is None
                         else rules.merge_imported_meta(old, given))

    def _put(self, data: bytes, merge: Callable[[Optional[Dict[str, Any]]], Dict[str, Any]]
             ) -> Dict[str, Any]:
        """The blob (written if missing or damaged), then ``merge(metadata kept or None)``
        as its metadata, under the shard's flock."""
        ref = rules.artifact_ref(data)
        hx = hex_of(ref)
        path = self.path_of(ref)

        def put(fd: int) -> Dict[str, Any]:
            st = lstat_at(fd, hx)
            refuse_symlink(st)
            if st is None or st.st_size != len(data) or _damaged(fd, hx, data):
                atomic_write(fd, hx, data, fsync=self._fsync)
            meta_name = hx + ".meta.json"
            refuse_symlink(lstat_at(fd, meta_name))
            got = read_file(fd, meta_name)
            old = _parse_meta(path + ".meta.json", got[0]) if got is not None else None
            meta = merge(old)
            if meta == old:
                return meta
            had = set((old or {}).get("run_ids") or [])
            for rid in meta.get("run_ids") or []:
                if rid not in had:
                    self._note_run(rid, ref)  # (before the metadata that names the run)
            atomic_write(fd, meta_name, dumps_readable(meta).encode("utf-8"), fsync=self._fsync)
            return meta

        with mapped(path):
            out = self._in_shard(hx[:2], put, create=True, exclusive=True)
        assert out is not None
        return out

    def _note_run(self, run_id: str, ref: str) -> None:
        rid = validate_run_id(run_id)
        line = encode_line({"ref": ref})
        with mapped(os.path.join(self._layout.root, BY_RUN, rid[0], rid + ".jsonl")):
            self._layout.in_dir(f"{BY_RUN}/{rid[0]}", lambda fd: append_lines(
                fd, rid + ".jsonl", [line], fsync=self._fsync), create=True)

    def forget_run(self, run_id: str) -> None:
        """Drop the list of refs a run stored (its run is gone: prune); the artifacts stay."""
        rid = validate_run_id(run_id)
        with mapped(os.path.join(self._layout.root, BY_RUN, rid[0], rid + ".jsonl")):
            self._layout.in_dir(f"{BY_RUN}/{rid[0]}", lambda fd: unlink_at(fd, rid + ".jsonl"),
                                create=False)

    def delete_artifact(self, ref: str) -> None:
        """Drop a blob and its metadata (metadata first); nothing if it is not kept."""
        hx = hex_of(ref)

        def drop(fd: int) -> None:
            unlink_at(fd, hx + ".meta.json")
            unlink_at(fd, hx)

        with mapped(self.path_of(ref)):
            self._in_shard(hx[:2], drop, create=False, exclusive=True)

    # ------------------------------------------------------------------ reads

    def get_artifact(self, ref: str) -> bytes:
        """The exact bytes, checked against the ref; ArtifactNotFoundError if none."""
        hx = hex_of(ref)
        path = self.path_of(ref)
        with mapped(path):
            got = self._in_shard(hx[:2], lambda fd: read_file(fd, hx), create=False)
        if got is None:
            raise ArtifactNotFoundError(ref)
        data = got[0]
        if hashlib.sha256(data).hexdigest() != hx:
            raise StoreIOError(path, "the artifact's bytes do not match its ref (damaged): "
                               "store it again from a good copy", code="artifact_corrupt")
        return data

    def artifact_meta(self, ref: str) -> Optional[Dict[str, Any]]:
        try:
            hx = hex_of(ref)
        except ArtifactNotFoundError:
            return None
        path = self.path_of(ref) + ".meta.json"
        with mapped(path):
            got = self._in_shard(hx[:2], lambda fd: read_file(fd, hx + ".meta.json"), create=False)
        return _parse_meta(path, got[0]) if got is not None else None

    def list_artifacts(self, *, run_id: Optional[str] = None,
                       tag: Optional[str] = None) -> List[Dict[str, Any]]:
        """Metadata, oldest first, of one run and/or with one tag."""
        metas = self._run_meta(run_id) if run_id is not None else self._all_meta()
        out = [m for m in metas if rules.artifact_matches(m, run_id, tag)]
        out.sort(key=rules.artifact_order)
        return out

    def _run_meta(self, run_id: str) -> List[Dict[str, Any]]:
        rid = validate_run_id(run_id)
        with mapped(os.path.join(self._layout.root, BY_RUN, rid[0], rid + ".jsonl")):
            got = self._layout.in_dir(f"{BY_RUN}/{rid[0]}",
                                      lambda fd: read_lines(fd, rid + ".jsonl"), create=False)
        refs = dict.fromkeys(r["ref"] for r in (got[0] if got else [])
                             if rules.is_artifact_ref(r.get("ref")))
        metas = (self.artifact_meta(ref) for ref in refs)
        return [m for m in metas if m is not None]

    def _all_meta(self) -> List[Dict[str, Any]]:
        root = os.path.join(self._layout.root, BASE)

        def shards(base: int) -> List[str]:
            with os.scandir(base) as it:
                return sorted(e.name for e in it if e.is_dir(follow_symlinks=False)
                              and len(e.name) == 2)

        with mapped(root):
            names = self._layout.in_dir(BASE, shards, create=False) or []
        out: List[Dict[str, Any]] = []
        for shard in names:
            def read(fd: int, shard: str = shard) -> List[Dict[str, Any]]:
                metas = []
                with os.scandir(fd) as it:
                    files = sorted(e.name for e in it if e.name.endswith(".meta.json")
                                   and not e.name.startswith("."))
                for name in files:
                    got = read_file(fd, name)
                    if got is not None:
                        metas.append(_parse_meta(os.path.join(root, shard, name), got[0]))
                return metas

            with mapped(os.path.join(root, shard)):
                out.extend(self._in_shard(shard, read, create=False) or [])
        return out


def _damaged(fd: int, hx: str, data: bytes) -> bool:
    """A kept blob of the right size that does not hold these bytes (a damaged copy:
    replaced by the good one being stored)."""
    got = read_file(fd, hx)
    return got is None or got[0] != data


def _parse_meta(path: str, data: bytes) -> Dict[str, Any]:
    try:
        meta = json.loads(data)
        if not isinstance(meta, dict) or not rules.is_artifact_ref(meta.get("ref")):
            raise ValueError("not an artifact's metadata")
    except ValueError as exc:
        raise StoreIOError(path, f"not an artifact's metadata: {exc}",
                           code="corrupt_artifact") from None
    return meta
