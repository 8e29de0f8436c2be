"""AbstractRuntime's artifact stores: content addressed, checked on load, files written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from abstractrt_cli.compat.abstractruntime import (
    ArtifactStore,
    FileArtifactStore,
    InMemoryArtifactStore,
    artifact_ref,
    compute_artifact_id,
    get_artifact_id,
    is_artifact_ref,
    resolve_artifact,
)
from abstractrt_cli.compat.abstractruntime._errors import CorruptArtifactError
from abstractrt_cli.errors import AbstractRTError, SymlinkRefusedError


@pytest.fixture(params=["memory", "files"])
def store(request, tmp_path) -> ArtifactStore:
    return InMemoryArtifactStore() if request.param == "memory" else FileArtifactStore(tmp_path)


def test_the_same_bytes_get_the_same_id_and_their_full_sha256(store):
    data = b"\x00\x01 binary \xff"
    first = store.store(data, content_type="application/octet-stream", run_id="r1", tags={"k": "v"})
    again = store.store(data)
    assert first.artifact_id == again.artifact_id == compute_artifact_id(data)
    assert len(first.artifact_id) == 32
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    loaded = store.load(first.artifact_id)
    assert loaded.content == data and loaded.metadata.size_bytes == len(data)
    # storing again under the same id replaces the metadata (AbstractRuntime's rule)
    assert loaded.metadata.run_id is None


def test_text_json_refs_and_search(store):
    note = store.store_text("héllo", run_id="r1", tags={"kind": "note"})
    data = store.store_json({"a": [1, 2]}, run_id="r1", tags={"kind": "data"})
    other = store.store_text("other", run_id="r2", tags={"kind": "note"})
    assert store.load_text(note.artifact_id) == "héllo"
    assert store.load_json(data.artifact_id) == {"a": [1, 2]}
    ref = artifact_ref(data.artifact_id)
    assert is_artifact_ref(ref) and get_artifact_id(ref) == data.artifact_id
    assert resolve_artifact(ref, store).as_json() == {"a": [1, 2]}
    assert resolve_artifact({"not": "a ref"}, store) is None
    assert {m.artifact_id for m in store.search(tags={"kind": "note"})} == {note.artifact_id, other.artifact_id}
    assert [m.artifact_id for m in store.search(run_id="r1", content_type="application/json")] == [data.artifact_id]
    assert store.delete_by_run("r1") == 2
    assert [m.artifact_id for m in store.list_all()] == [other.artifact_id]
    assert store.delete(other.artifact_id) and not store.delete(other.artifact_id)
    assert store.load("missing") is None and store.load_json("missing") is None


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "a/b", "a.b", "x\0y"])
def test_ids_that_could_name_another_path_are_refused(store, bad):
    with pytest.raises(ValueError) as info:
        store.store(b"x", artifact_id=bad)
    assert isinstance(info.value, AbstractRTError) and info.value.code == "invalid_artifact_id"
    with pytest.raises(ValueError):
        store.load(bad)


def test_the_file_layout_is_abstractruntimes_and_private(tmp_path):
    store = FileArtifactStore(tmp_path)
    meta = store.store(b"payload", content_type="text/plain")
    folder = tmp_path / "artifacts"
    assert sorted(os.listdir(folder)) == [f"{meta.artifact_id}.bin", f"{meta.artifact_id}.meta"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in os.listdir(folder):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    recorded = json.loads((folder / f"{meta.artifact_id}.meta").read_text())
    assert recorded["sha256"] == hashlib.sha256(b"payload").hexdigest()
    assert FileArtifactStore(tmp_path).load_text(meta.artifact_id) == "payload"


def test_bytes_changed_on_disk_are_refused_not_handed_out(tmp_path):
    store = FileArtifactStore(tmp_path)
    meta = store.store(b"the real bytes")
    (tmp_path / "artifacts" / f"{meta.artifact_id}.bin").write_bytes(b"forged bytes")
    with pytest.raises(CorruptArtifactError, match="does not match its SHA-256"):
        store.load(meta.artifact_id)


def test_an_artifact_exists_once_its_metadata_is_written(tmp_path):
    store = FileArtifactStore(tmp_path)
    # what a crash between the two writes leaves: the bytes without their metadata
    (tmp_path / "artifacts" / "orphan.bin").write_bytes(b"half")
    assert not store.exists("orphan") and store.load("orphan") is None
    assert store.list_all() == []
    meta = store.store(b"half", artifact_id="orphan")
    assert store.exists("orphan") and store.load("orphan").content == b"half"
    assert meta.artifact_id == "orphan"


def test_unreadable_metadata_is_reported_not_skipped(tmp_path):
    store = FileArtifactStore(tmp_path)
    good = store.store(b"good", run_id="r")
    (tmp_path / "artifacts" / "broken.meta").write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="broken"):
        store.list_all()
    seen = []
    assert [m.artifact_id for m in store.list_by_run("r", on_corrupt=seen.append)] == [good.artifact_id]
    assert [e.artifact_id for e in seen] == ["broken"]


def test_a_symlink_planted_for_an_artifact_is_refused(tmp_path):
    store = FileArtifactStore(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    os.symlink(secret, tmp_path / "artifacts" / "planted.meta")
    with pytest.raises(SymlinkRefusedError):
        store.get_metadata("planted")
