"""Artifacts (PRODUCT §9) in ``<schema>.artifacts`` with ``artifact_runs``/``artifact_tags``.

One row per blob, keyed by its ref (``sha256:<hex>``): the bytes (``bytea``), size,
content type, name and creation time (as written, and parsed for the order). The runs
and tags of a blob are rows of the side tables, numbered in the order they were added
(the order the metadata lists them in) and indexed by run and by tag, so ``artifacts
--run``/``--tag`` read the matching blobs' metadata only; no list reads any bytes.

Storing bytes that are there already sends no bytes: the blob's row is locked and its
metadata merged by ``rules.merge_artifact_meta`` (the rule every store follows), in one
transaction. Two processes putting the same new bytes at once: one inserts, the other
waits for it on the primary key and merges into what it wrote.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...errors import ArtifactNotFoundError, PayloadError, StoreIOError
from .. import rules
from ..files.ids import validate_run_id

__all__ = ["PostgresArtifactStore", "CORRUPT_ARTIFACT"]

CORRUPT_ARTIFACT = "corrupt_artifact"  # StoreIOError.code: stored bytes that are not their ref's


class PostgresArtifactStore:
    """ArtifactStore over PostgreSQL; shares the run store's connections (``PostgresDb``)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        s = db.schema
        self._meta = (
            "SELECT a.ref, a.size, a.content_type, a.name, a.created_at, "
            f"coalesce((SELECT array_agg(r.run_id ORDER BY r.n) FROM {s}.artifact_runs r "
            "WHERE r.ref = a.ref), '{}'), "
            f"coalesce((SELECT array_agg(t.tag ORDER BY t.n) FROM {s}.artifact_tags t "
            f"WHERE t.ref = a.ref), '{{}}') FROM {s}.artifacts a")
        self._lock = self._meta + " WHERE a.ref = %s FOR UPDATE OF a"
        self._insert = (f"INSERT INTO {s}.artifacts (ref, data, size, content_type, name, "
                        "created_at, created) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (ref) DO NOTHING")
        self._update = f"UPDATE {s}.artifacts SET content_type = %s, name = %s WHERE ref = %s"
        # ORDER BY the position: the side tables' serial numbers follow the list's order.
        self._add_runs = (f"INSERT INTO {s}.artifact_runs (ref, run_id) SELECT %s, u.x "
                          "FROM unnest(%s::text[]) WITH ORDINALITY AS u(x, i) ORDER BY u.i "
                          "ON CONFLICT DO NOTHING")
        self._add_tags = (f"INSERT INTO {s}.artifact_tags (ref, tag) SELECT %s, u.x "
                          "FROM unnest(%s::text[]) WITH ORDINALITY AS u(x, i) ORDER BY u.i "
                          "ON CONFLICT DO NOTHING")
        self._data = f"SELECT data FROM {s}.artifacts WHERE ref = %s"
        self._by_run = f"a.ref IN (SELECT ref FROM {s}.artifact_runs WHERE run_id = %s)"
        self._by_tag = f"a.ref IN (SELECT ref FROM {s}.artifact_tags WHERE tag = %s)"
        self._order = " ORDER BY a.created, a.ref"
        self._delete = f"DELETE FROM {s}.artifacts WHERE ref = %s"

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ writes

    def put_artifact(self, data: bytes, *, content_type: str = rules.DEFAULT_CONTENT_TYPE,
                     run_id: Optional[str] = None, tags: Sequence[str] = (),
                     name: Optional[str] = None) -> Dict[str, Any]:
        """Store the bytes (durable when this returns) and return the metadata, merged
        with what the same bytes had already."""
        data = rules.artifact_bytes(data, content_type, run_id, tags, name)
        if run_id is not None:
            validate_run_id(run_id)  # the run store's rule, before anything is written
        first = rules.new_artifact_meta(data, content_type=content_type, run_id=run_id,
                                        tags=list(tags), name=name,
                                        created_at=datetime.now(timezone.utc).isoformat())
        return self._put(data, first, [(content_type, run_id, list(tags), name)])

    def import_artifact(self, meta: Dict[str, Any], data: bytes) -> Dict[str, Any]:
        """Keep bytes with the metadata another store gave them (``store copy``): new ones
        as given (their ``created_at`` too), known ones merged by the same rule as a put
        (every run and tag added, the time they have here kept)."""
        data = bytes(data)
        ref = rules.artifact_ref(data)
        if meta.get("ref") != ref:
            raise PayloadError(f"artifact {meta.get('ref')}: the bytes given are {ref}")
        content_type = meta.get("content_type") or rules.DEFAULT_CONTENT_TYPE
        run_ids = list(meta.get("run_ids") or [])
        tags = list(meta.get("tags") or [])
        name = meta.get("name")
        rules.check_artifact_args(content_type, None, tags, name)
        if not all(isinstance(r, str) for r in run_ids):
            raise PayloadError(f"artifact {ref}: its run ids are strings")
        for rid in run_ids:
            validate_run_id(rid)
        created_at = meta.get("created_at")
        if not isinstance(created_at, str):
            created_at = datetime.now(timezone.utc).isoformat()
        first = {"ref": ref, "size": len(data), "content_type": content_type, "name": name,
                 "run_ids": list(dict.fromkeys(run_ids)), "tags": list(dict.fromkeys(tags)),
                 "created_at": created_at}
        puts = [(content_type, None, tags, name)] + [(content_type, r, [], None) for r in run_ids]
        return self._put(data, first, puts)

    def _put(self, data: bytes, first: Dict[str, Any],
             puts: List[Tuple[str, Optional[str], List[str], Optional[str]]]) -> Dict[str, Any]:
        """Insert ``first`` for new bytes; otherwise merge each of ``puts`` into what is
        there. One transaction, the blob's row locked."""
        ref = first["ref"]
        c = self._db.connector
        s = c.session()
        with c.mapped(s):
            with s.conn.transaction():
                conn = s.conn
                while True:
                    row = conn.execute(self._lock, (ref,)).fetchone()
                    if row is not None:
                        break
                    created = rules.from_micros(rules.timestamp_micros(first["created_at"]) or 0)
                    cur = conn.execute(self._insert, (ref, data, len(data), first["content_type"],
                                                      first["name"], first["created_at"], created))
                    if cur.rowcount == 1:
                        self._add(conn, ref, first["run_ids"], first["tags"])
                        return first
                    # Someone else inserted these bytes meanwhile (and has committed: the
                    # insert waited for them): merge into theirs.
                old = self._meta_of(row)
                meta = old
                for content_type, run_id, tags, name in puts:
                    meta = rules.merge_artifact_meta(meta, content_type=content_type,
                                                     run_id=run_id, tags=tags, name=name)
                if (meta["content_type"], meta["name"]) != (old["content_type"], old["name"]):
                    conn.execute(self._update, (meta["content_type"], meta["name"], ref))
                self._add(conn, ref, [r for r in meta["run_ids"] if r not in old["run_ids"]],
                          [t for t in meta["tags"] if t not in old["tags"]])
                return meta

    def _add(self, conn: Any, ref: str, run_ids: List[str], tags: List[str]) -> None:
        if run_ids:
            conn.execute(self._add_runs, (ref, run_ids))
        if tags:
            conn.execute(self._add_tags, (ref, tags))

    def delete_artifact(self, ref: str) -> None:
        """Drop the blob and its metadata (runs and tags go with it); none: nothing to do."""
        self._db.connector.execute(self._delete, (ref,))

    # ------------------------------------------------------------------ reads

    def get_artifact(self, ref: str) -> bytes:
        """The exact bytes, checked against the ref; ArtifactNotFoundError if none."""
        if not rules.is_artifact_ref(ref):
            raise ArtifactNotFoundError(str(ref))
        row = self._db.connector.fetchone(self._data, (ref,))
        if row is None:
            raise ArtifactNotFoundError(ref)
        data = bytes(row[0])
        if "sha256:" + hashlib.sha256(data).hexdigest() != ref:
            raise StoreIOError(self._db.location, f"artifact {ref}: the bytes stored are not "
                                                  "the ones of its ref", code=CORRUPT_ARTIFACT)
        return data

    def artifact_meta(self, ref: str) -> Optional[Dict[str, Any]]:
        if not isinstance(ref, str):
            return None
        row = self._db.connector.fetchone(self._meta + " WHERE a.ref = %s", (ref,))
        return self._meta_of(row) if row is not None else None

    def list_artifacts(self, *, run_id: Optional[str] = None,
                       tag: Optional[str] = None) -> List[Dict[str, Any]]:
        """Metadata, oldest first (``rules.artifact_order``), of one run and/or one tag."""
        where, params = [], []  # type: Tuple[List[str], List[Any]]
        if run_id is not None:
            where.append(self._by_run)
            params.append(run_id)
        if tag is not None:
            where.append(self._by_tag)
            params.append(tag)
        query = self._meta
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = self._db.connector.fetchall(query + self._order, params)
        return [self._meta_of(r) for r in rows]

    @staticmethod
    def _meta_of(row: Tuple[Any, ...]) -> Dict[str, Any]:
        ref, size, content_type, name, created_at, run_ids, tags = row
        return {"ref": ref, "size": size, "content_type": content_type, "name": name,
                "run_ids": list(run_ids), "tags": list(tags), "created_at": created_at}
