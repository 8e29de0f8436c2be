"""The life of a run (PRODUCT §9) end to end, through the installed ``abstractrt``:
retry, snapshots and forks, artifacts, export and import, prune, logs, ledger --follow,
and bad input on each (one clear line, the documented exit code, nothing changed)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import CLI, abstractrt_command, assert_one_line_error, snapshot, unchanged

from abstractrt_cli.core.integrity import verify_run
from abstractrt_cli.core.models import RunState

ASSETS = Path(__file__).parent / "assets" / "lifecycle"
RAW = b"\x00\xff\xfe\x80binary\x00tail\xc3\x28"  # what blobs.py keeps (tests/assets/lifecycle)


@pytest.fixture
def world(tmp_path):
    w = CLI(tmp_path, copy_examples=False)
    for f in sorted(ASSETS.glob("*.py")):
        shutil.copy(f, w.workflows_dir / f.name)
    return w


def ok(world, *args, code=0, input=None):
    r = world.run(*args, input=input)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.stderr, r.output
    return r


def js(world, *args, code=0, input=None):
    return ok(world, *args, "--json", code=code, input=input).json()


def raw_run(world, *args, input=b""):
    """The installed command with bytes in and out (``artifact cat``)."""
    return subprocess.run(abstractrt_command() + list(args), input=input, capture_output=True,
                          env=world.env, cwd=world.tmp, timeout=60)


def state(world, rid):
    return js(world, "show", rid)


def refused(world, code, *args, needles=(), input=None):
    """A command refused with one error line and exit ``code``, the data dir unchanged."""
    with unchanged(world):
        r = world.run(*args, input=input)
        assert_one_line_error(r, code, *needles)
    return r


def misused(world, *args):
    """Wrong usage that the option parser (Typer) refuses: exit 2, the data dir unchanged."""
    with unchanged(world):
        r = world.run(*args)
        assert r.exit_code == 2 and "Traceback" not in r.stderr, r.output
    with unchanged(world):
        r = world.run(*args, "--json")
        assert r.exit_code == 2 and r.json()["error"]["code"] == "usage", r.output
    return r


def run_file(world, rid):
    return world.data_dir / "runs" / rid[0] / f"{rid}.json"


def ledger_file(world, rid):
    return world.data_dir / "runs" / rid[0] / f"{rid}.jsonl"


def mixed_run(world, tmp_path, *answers):
    side = tmp_path / "side.txt"
    run = js(world, "start", "mixed", "--set", f"side={side}")
    for a in answers:
        run = js(world, "resume", run["run_id"], "--answer", a, code=3 if a == "boom" else 0)
    return run, side


# ---------------------------------------------------------------------------- retry


def test_retry_after_the_cause_is_removed_completes_running_the_recorded_effect_once(world, tmp_path):
    side, flag = tmp_path / "side.txt", tmp_path / "flag"
    flag.write_text("on")
    run = js(world, "start", "broken_once", "--set", f"side={side}", "--set", f"flag={flag}", code=3)
    rid = run["run_id"]
    assert run["status"] == "failed" and "the flag file is there" in run["error"]
    assert side.read_text() == "work\n"

    # Still broken: the retry is recorded, the run fails again (exit 3), the effect stays done.
    again = js(world, "retry", rid[:8], code=3)
    assert again["status"] == "failed" and side.read_text() == "work\n"

    flag.unlink()
    r = ok(world, "retry", rid)
    assert "completed" in r.stdout and f"retried run {rid}" in r.stderr
    done = state(world, rid)
    assert done["status"] == "completed" and done["output"]["prepared"] == {"ok": True}
    assert side.read_text() == "work\n"  # the effect recorded before the failure ran once
    retries = [rec for rec in js(world, "ledger", rid) if rec["kind"] == "retry"]
    assert len(retries) == 2 and all(rec["actor_id"] == "tester" for rec in retries)
    assert retries[0]["result"]["was"]["node"] == "check"
    assert "verified" in ok(world, "ledger", rid, "--verify").stdout

    # A run that has not failed (completed, waiting, cancelled): exit 1, nothing changed.
    refused(world, 1, "retry", rid, needles=("has not failed", "completed"))
    waiting, _ = mixed_run(world, tmp_path)
    refused(world, 1, "retry", waiting["run_id"], needles=("has not failed", "waiting"))
    ok(world, "cancel", waiting["run_id"])
    refused(world, 1, "retry", waiting["run_id"], needles=("cancelled",))
    refused(world, 1, "retry", "feedfacecafe", needles=("feedfacecafe",))


def test_retry_from_a_node_enters_it_as_a_new_visit(world, tmp_path):
    side, flag = tmp_path / "side.txt", tmp_path / "flag"
    flag.write_text("on")
    rid = js(world, "start", "broken_once", "--set", f"side={side}", "--set", f"flag={flag}",
             code=3)["run_id"]
    refused(world, 1, "retry", rid, "--from", "nowhere",
            needles=("no node 'nowhere'", "its nodes: prepare, check, reset, finish"))
    flag.unlink()
    run = js(world, "retry", rid, "--from", "reset")
    assert run["status"] == "completed" and run["output"]["reset"] is True
    assert side.read_text() == "work\n"
    # Entering the effect's node again is a new visit: its effect runs again.
    flag.write_text("on")
    rid2 = js(world, "start", "broken_once", "--set", f"side={side}", "--set", f"flag={flag}",
              code=3)["run_id"]
    flag.unlink()
    assert js(world, "retry", rid2, "--from", "prepare")["status"] == "completed"
    assert side.read_text() == "work\n" * 3


# ---------------------------------------------------------------------------- snapshots, forks


def test_fork_at_every_record_of_an_ask_effect_ask_run(world, tmp_path):
    run, side = mixed_run(world, tmp_path)
    rid = run["run_id"]
    seen = {run["ledger_count"]: run}  # each checkpoint we saw, by the records it covers
    for answer in ("one", "two"):
        run = js(world, "resume", rid, "--answer", answer)
        seen[run["ledger_count"]] = run
    assert run["status"] == "completed" and side.read_text() == "work 1\n"
    records = js(world, "ledger", rid)
    kinds = [(r["kind"], r["status"]) for r in records]
    assert ("effect", "waiting") in kinds and ("effect", "completed") in kinds
    source = (run_file(world, rid).read_bytes(), ledger_file(world, rid).read_bytes())
    rt = world.runtime()
    ledger = rt.ledger_store
    for rec in records:
        seq = rec["seq"]
        fork = js(world, "fork", rid, "--at", str(seq))
        truth = rt.state_at(rid, seq)
        assert fork["run_id"] != rid
        assert fork["vars"] == truth.vars, seq
        assert (fork["status"], fork["current_node"]) == (truth.status.value, truth.current_node)
        if seq + 1 in seen:  # a state the source really checkpointed
            assert fork["vars"] == seen[seq + 1]["vars"], seq
            assert fork["status"] == seen[seq + 1]["status"], seq
        (first,) = ledger.list(fork["run_id"])
        assert first["kind"] == "fork"
        assert first["result"]["source_run_id"] == rid and first["result"]["source_seq"] == seq
        assert first["result"]["source_record_hash"] == rec["record_hash"]
        assert verify_run(RunState.from_dict(fork), [first])["ok"]
    # The source never changed, and no fork ran the effect again.
    assert (run_file(world, rid).read_bytes(), ledger_file(world, rid).read_bytes()) == source
    assert side.read_text() == "work 1\n"


def test_a_fork_cut_at_a_wait_waits_there_and_goes_its_own_way(world, tmp_path):
    run, side = mixed_run(world, tmp_path, "one")
    rid = run["run_id"]
    records = js(world, "ledger", rid)
    second_wait = [r for r in records if r["status"] == "waiting"][-1]["seq"]
    r = ok(world, "fork", rid, "--at", str(second_wait))
    assert "second?" in r.stdout and "forked run" in r.stderr
    fork = [x for x in js(world, "runs") if x["run_id"] != rid][0]
    assert fork["status"] == "waiting" and fork["waiting"]["prompt"] == "second?"
    done = js(world, "resume", fork["run_id"], "--answer", "other")
    assert done["output"] == {"first": "one", "second": "other"}
    assert side.read_text() == "work 1\n"  # the effect before the cut is not run again
    # A fork cut before the effect is `running`, not ticked; ticking it runs the effect.
    before_effect = [r for r in records if r["kind"] == "resume"][0]["seq"]
    cut = js(world, "fork", rid, "--at", str(before_effect))
    assert cut["status"] == "running" and side.read_text() == "work 1\n"
    assert js(world, "tick", cut["run_id"])["waiting"]["prompt"] == "second?"
    assert side.read_text() == "work 1\nwork 1\n"
    assert state(world, rid)["status"] == "waiting"  # the source is where it was


def test_snapshots_are_named_tagged_listed_and_forked_from(world, tmp_path):
    run, _ = mixed_run(world, tmp_path, "one")
    rid = run["run_id"]
    snap = js(world, "snapshot", rid[:8], "--name", "mid", "--tag", "release", "--tag", "qa")
    assert snap["run_id"] == rid and snap["name"] == "mid" and snap["tags"] == ["release", "qa"]
    records = js(world, "ledger", rid)
    assert snap["ledger_count"] == len(records) == run["ledger_count"]
    assert snap["ledger_head"] == records[-1]["record_hash"]
    assert snap["state"]["vars"] == run["vars"] and snap["actor_id"] == "tester"
    ok(world, "resume", rid, "--answer", "two")  # the source moves on; the snapshot does not
    js(world, "snapshot", rid, "--name", "end")

    refused(world, 1, "snapshot", rid, "--name", "mid", needles=("mid", "already"))
    refused(world, 2, "snapshot", rid, "--name", " ")
    refused(world, 1, "snapshot", "feedfacecafe", "--name", "x", needles=("feedfacecafe",))

    assert [s["name"] for s in js(world, "snapshots")] == ["mid", "end"]
    assert [s["name"] for s in js(world, "snapshots", "--tag", "qa")] == ["mid"]
    assert [s["name"] for s in js(world, "snapshots", "--run", rid[:8])] == ["mid", "end"]
    assert js(world, "snapshots", "--tag", "none") == []
    table = ok(world, "snapshots").stdout
    assert "mid" in table and "release, qa" in table
    refused(world, 1, "snapshots", "--run", "feedfacecafe", needles=("feedfacecafe",))

    fork = js(world, "fork", rid, "--snapshot", "mid")
    assert fork["vars"] == snap["state"]["vars"] and fork["status"] == "waiting"
    (first,) = js(world, "ledger", fork["run_id"])
    assert first["result"]["snapshot"] == "mid"
    assert first["result"]["source_seq"] == snap["ledger_count"] - 1
    assert first["result"]["source_record_hash"] == snap["ledger_head"]
    assert js(world, "resume", fork["run_id"], "--answer", "again")["output"]["second"] == "again"

    refused(world, 1, "fork", rid, "--snapshot", "nope", needles=("no snapshot named 'nope'",))
    refused(world, 1, "fork", rid, "--at", "99", needles=("no ledger record 99",))
    refused(world, 2, "fork", rid, "--at", "1", "--snapshot", "mid")
    refused(world, 2, "fork", rid)
    refused(world, 2, "fork", rid, "--at", "-1")
    refused(world, 1, "fork", "feedfacecafe", "--at", "0", needles=("feedfacecafe",))


# ---------------------------------------------------------------------------- artifacts


def test_artifacts_are_binary_safe_by_ref_and_stored_once(world, tmp_path):
    run = js(world, "start", "blobs")
    rid = run["run_id"]
    kept = run["vars"]["kept"]
    assert kept.startswith("sha256:") and len(kept) == 71
    (meta,) = js(world, "artifacts", "--run", rid)
    assert meta["ref"] == kept and meta["size"] == len(RAW) and meta["tags"] == ["raw"]
    assert meta["content_type"] == "application/x-raw" and meta["run_ids"] == [rid]
    cp = raw_run(world, "artifact", "cat", kept)
    assert cp.returncode == 0 and cp.stdout == RAW, cp.stderr  # NUL and non-UTF-8 exactly
    as_json = js(world, "artifact", "cat", kept)
    assert base64.b64decode(as_json["data_base64"]) == RAW and as_json["ref"] == kept

    big = tmp_path / "big.bin"
    data = os.urandom(2 * 1024 * 1024)
    big.write_bytes(data)
    done = js(world, "resume", rid, "--artifact", str(big))
    info = done["vars"]["upload"]["artifact"]
    assert done["output"] == {"size": len(data), "same": True}
    assert info["size"] == len(data) and info["name"] == "big.bin"
    assert info["content_type"] == "application/octet-stream"
    ref = info["$artifact"]
    cp = raw_run(world, "artifact", "cat", ref)
    assert cp.returncode == 0 and cp.stdout == data
    # The run, its ledger and their JSON hold the ref, never the bytes.
    sample = base64.b64encode(data[1000:1048]).decode()
    for doc in (ok(world, "show", rid, "--json").stdout, ok(world, "ledger", rid, "--json").stdout):
        assert len(doc) < 64 * 1024 and ref in doc and sample not in doc
    assert run_file(world, rid).stat().st_size < 64 * 1024
    assert ledger_file(world, rid).stat().st_size < 64 * 1024

    # The same bytes twice (by node code, and by a file): one ref, one blob.
    other = js(world, "start", "blobs")
    assert other["vars"]["kept"] == kept
    again = js(world, "resume", other["run_id"], "--artifact", str(big), "--json")
    assert again["vars"]["upload"]["artifact"]["$artifact"] == ref
    listing = js(world, "artifacts")
    assert sorted(m["ref"] for m in listing) == sorted([kept, ref])
    by_ref = {m["ref"]: m for m in listing}
    assert by_ref[kept]["run_ids"] == [rid, other["run_id"]]
    assert by_ref[ref]["run_ids"] == [rid, other["run_id"]]
    assert [m["ref"] for m in js(world, "artifacts", "--tag", "raw")] == [kept]
    assert "big.bin" in ok(world, "artifacts").stdout


def test_resume_artifact_merges_with_the_other_payload_options(world, tmp_path):
    run, _ = mixed_run(world, tmp_path, "one")
    doc = tmp_path / "notes.txt"
    doc.write_text("hello\n")
    done = js(world, "resume", run["run_id"], "--answer", "two", "--set", "who=me",
              "--artifact", str(doc), "--key", "doc")
    second = done["vars"]["second"]
    assert second["response"] == "two" and second["who"] == "me"
    assert second["doc"]["content_type"] == "text/plain" and second["doc"]["size"] == 6
    cp = raw_run(world, "artifact", "cat", second["doc"]["$artifact"])
    assert cp.stdout == b"hello\n"


def test_artifact_bad_input(world, tmp_path):
    run, _ = mixed_run(world, tmp_path)
    rid = run["run_id"]
    f = tmp_path / "f.bin"
    f.write_bytes(b"\x00")
    refused(world, 1, "artifact", "cat", "sha256:" + "0" * 64, needles=("no such artifact",))
    refused(world, 1, "artifact", "cat", "not-a-ref", needles=("no such artifact", "sha256:"))
    misused(world, "artifact", "show", "sha256:" + "0" * 64)
    refused(world, 1, "artifacts", "--run", "feedfacecafe", needles=("feedfacecafe",))
    refused(world, 1, "resume", rid, "--artifact", str(tmp_path / "missing.bin"),
            needles=("missing.bin", "no such file"))
    refused(world, 2, "resume", rid, "--answer", "x", "--key", "doc")
    refused(world, 2, "resume", rid, "--set", "artifact=1", "--artifact", str(f))
    # A resume that would be refused stores nothing (the run is not waiting any more).
    ok(world, "cancel", rid)
    refused(world, 1, "resume", rid, "--artifact", str(f), needles=("not waiting",))
    assert js(world, "artifacts") == []


# ---------------------------------------------------------------------------- export, import


def family(world, tmp_path):
    """A waiting parent with a waiting child, a completed run with a snapshot, a run with
    an artifact; their ids."""
    parent = js(world, "start", "parent")
    child = parent["waiting"]["details"]["sub_run_id"]
    done, _ = mixed_run(world, tmp_path, "one", "two")
    js(world, "snapshot", done["run_id"], "--name", "final", "--tag", "t")
    blob = js(world, "start", "blobs")
    return parent["run_id"], child, done["run_id"], blob["run_id"]


def test_export_then_import_into_a_fresh_data_dir(world, tmp_path):
    parent, child, done, blob = family(world, tmp_path)
    bundle_path = tmp_path / "bundle.json"
    r = ok(world, "export", parent[:8], done, blob, "--children")
    bundle_path.write_text(r.stdout)
    bundle = json.loads(r.stdout)
    assert bundle["format"] == 1 and "exported 4 runs" in r.stderr
    assert [e["run"]["run_id"] for e in bundle["runs"]] == [parent, child, done, blob]
    without = json.loads(ok(world, "export", parent).stdout)
    assert [e["run"]["run_id"] for e in without["runs"]] == [parent]

    other = tmp_path / "other"
    report = js(world, "--data-dir", str(other), "import", str(bundle_path))
    assert sorted(report["imported"]) == sorted([parent, child, done, blob])
    assert report["unchanged"] == [] and report["snapshots"] == 1 and report["artifacts"] == 1
    for rid in (parent, child, done, blob):
        v = ok(world, "--data-dir", str(other), "ledger", rid, "--verify")
        assert "verified" in v.stdout and "checkpointed state proved" in v.stdout
        assert js(world, "--data-dir", str(other), "show", rid) == state(world, rid)
        assert js(world, "--data-dir", str(other), "ledger", rid) == js(world, "ledger", rid)
    assert js(world, "--data-dir", str(other), "snapshots")[0]["name"] == "final"
    kept = state(world, blob)["vars"]["kept"]
    cp = raw_run(world, "--data-dir", str(other), "artifact", "cat", kept)
    assert cp.stdout == RAW
    # The imported runs carry on there.
    moved = js(world, "--data-dir", str(other), "resume", child, "--answer", "yes")
    assert moved["status"] == "completed"
    assert js(world, "--data-dir", str(other), "show", parent)["status"] == "completed"

    # The same bundle twice: accepted, nothing written. Standard input works too.
    third = tmp_path / "third"
    js(world, "--data-dir", str(third), "import", "-", input=bundle_path.read_text())
    snap = snapshot(third)
    again = js(world, "--data-dir", str(third), "import", str(bundle_path))
    assert again["imported"] == [] and sorted(again["unchanged"]) == sorted(
        [parent, child, done, blob])
    assert snapshot(third) == snap
    assert "already here and identical" in ok(world, "--data-dir", str(third), "import",
                                              str(bundle_path)).stdout


def _tampered(bundle, how):
    b = json.loads(json.dumps(bundle))
    entry = b["runs"][-1]
    if how == "record":
        entry["ledger"][0]["result"]["vars"]["side"] = "/elsewhere"
    elif how == "state":
        entry["run"]["vars"]["first"] = {"response": "forged"}
    elif how == "artifact":
        blob = next(a for e in b["runs"] for a in e["artifacts"] if "data" in a)
        blob["data"] = base64.b64encode(b"other bytes").decode()
    elif how == "dropped record":
        entry["ledger"].pop()
    return b


@pytest.mark.parametrize("how", ["record", "state", "artifact", "dropped record"])
def test_a_tampered_bundle_is_refused_with_nothing_written(world, tmp_path, how):
    blob = js(world, "start", "blobs")["run_id"]
    done, _ = mixed_run(world, tmp_path, "one", "two")
    bundle = json.loads(ok(world, "export", blob, done["run_id"]).stdout)
    if how == "artifact":
        bundle["runs"].reverse()  # (the run with the bytes is checked last)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_tampered(bundle, how)))
    fresh = tmp_path / "fresh"
    r = world.run("--data-dir", str(fresh), "import", str(bad))
    assert_one_line_error(r, 1, "bundle" if how == "artifact" else "run ")
    assert not fresh.exists()  # nothing written, not even the data dir
    # Into a data dir holding other runs: nothing changes there either.
    other = tmp_path / "other"
    js(world, "--data-dir", str(other), "start", "blobs")
    snap = snapshot(other)
    r = world.run("--data-dir", str(other), "import", str(bad), "--json")
    assert r.exit_code == 1 and r.json()["error"]["code"] == "invalid_bundle", r.output
    assert snapshot(other) == snap


def test_import_refuses_malformed_and_conflicting_bundles(world, tmp_path):
    run, _ = mixed_run(world, tmp_path, "one")
    good = tmp_path / "good.json"
    good.write_text(ok(world, "export", run["run_id"]).stdout)
    for name, text, needle in (("not.json", '{"format": 1, "runs": [', "not JSON"),
                               ("list.json", "[1, 2]", "not a bundle"),
                               ("future.json", '{"format": 99, "runs": []}', "format 99"),
                               ("shape.json", '{"format": 1, "runs": [1]}', "not an object")):
        p = tmp_path / name
        p.write_text(text)
        refused(world, 1, "import", str(p), needles=(needle,))
    refused(world, 1, "import", str(tmp_path / "missing.json"), needles=("missing.json",))
    refused(world, 1, "import", "-", input="garbage", needles=("standard input", "not JSON"))
    refused(world, 1, "export", "feedfacecafe", needles=("feedfacecafe",))
    # The same run id with other content here: refused, nothing written.
    ok(world, "resume", run["run_id"], "--answer", "two")
    refused(world, 1, "import", str(good), needles=("exists here and differs",))


# ---------------------------------------------------------------------------- prune


def test_prune_keeps_waiting_runs_and_shared_artifacts_and_records_what_went(world, tmp_path):
    done, _ = mixed_run(world, tmp_path, "one", "two")
    waiting, _ = mixed_run(world, tmp_path, "one")
    b1 = js(world, "start", "blobs")
    b2 = js(world, "start", "blobs")  # keeps the same bytes: a shared artifact
    unique = tmp_path / "unique.bin"
    unique.write_bytes(b"only b1 has this")
    b1_done = js(world, "resume", b1["run_id"], "--artifact", str(unique))
    unique_ref = b1_done["vars"]["upload"]["artifact"]["$artifact"]
    failed, _ = mixed_run(world, tmp_path, "one", "boom")
    heads = {rid: js(world, "ledger", rid)[-1]["record_hash"]
             for rid in (done["run_id"], b1["run_id"])}
    counts = {rid: len(js(world, "ledger", rid)) for rid in heads}

    # --dry-run: what would go, nothing changed.
    with unchanged(world):
        plan = js(world, "prune", "--older-than", "0s", "--dry-run")
    assert plan["dry_run"] is True
    assert sorted(r["run_id"] for r in plan["runs"]) == sorted(
        [done["run_id"], b1["run_id"], failed["run_id"]])
    assert plan["artifacts"] == [unique_ref]
    with unchanged(world):
        assert "would prune 3 runs" in ok(world, "prune", "--older-than", "0s", "--dry-run").stdout
        assert js(world, "prune", "--older-than", "1d")["pruned"] == []  # none ended a day ago

    result = js(world, "prune", "--older-than", "0s", "--status", "completed")
    records = {r["run_id"]: r for r in result["pruned"]}
    assert sorted(records) == sorted(heads)
    for rid, rec in records.items():
        assert rec["ledger_head"] == heads[rid] and rec["ledger_count"] == counts[rid]
        assert rec["status"] == "completed" and rec["actor_id"] == "tester"
        refused(world, 1, "show", rid, needles=(rid,))
    assert result["artifacts"] == [unique_ref]
    # Never a waiting run; the failed one was not asked for; the shared blob stays.
    for rid in (waiting["run_id"], b2["run_id"], failed["run_id"]):
        assert state(world, rid)["status"] in ("waiting", "failed")
    assert raw_run(world, "artifact", "cat", b2["vars"]["kept"]).stdout == RAW
    refused(world, 1, "artifact", "cat", unique_ref, needles=("no such artifact",))
    assert {r["run_id"] for r in js(world, "pruned")} == set(heads)
    listing = ok(world, "pruned").stdout
    assert done["run_id"] in listing and heads[done["run_id"]][:16] in listing

    r = ok(world, "prune", "--older-than", "0s")
    assert "pruned 1 run" in r.stdout  # the failed one
    assert len(js(world, "pruned")) == 3


def test_prune_bad_input_is_a_usage_error_and_changes_nothing(world, tmp_path):
    mixed_run(world, tmp_path, "one", "two")
    for args in (("--status", "running"), ("--status", "waiting"), ("--status", "bogus")):
        refused(world, 2, "prune", "--older-than", "0s", *args)
    refused(world, 2, "prune", "--older-than", "soon", needles=("--older-than",))
    misused(world, "prune")


def test_prune_keeps_a_child_whose_parent_has_not_ended(world, tmp_path):
    from cli_helpers import hold_lock

    parent = js(world, "start", "parent")
    child = parent["waiting"]["details"]["sub_run_id"]
    with hold_lock(world.data_dir, parent["run_id"]):  # the parent is not told
        assert js(world, "resume", child, "--answer", "yes")["status"] == "completed"
    assert state(world, parent["run_id"])["status"] == "waiting"
    plan = js(world, "prune", "--older-than", "0s", "--dry-run")
    assert plan["runs"] == [] and plan["skipped"][0]["run_id"] == child
    assert "has not ended" in plan["skipped"][0]["why"]


# ---------------------------------------------------------------------------- logs


def test_logs_show_what_nodes_printed_with_their_step(world, tmp_path):
    side = tmp_path / "side.txt"
    r = ok(world, "start", "mixed", "--set", f"side={side}", "--json")
    run = r.json()  # stdout is the run's JSON only: node output went to stderr
    assert "asking the first question" in r.stderr
    rid = run["run_id"]
    ok(world, "resume", rid, "--answer", "one")
    data = js(world, "logs", rid)
    assert data["run_id"] == rid and data["dropped_bytes"] == 0
    got = [(e["node_id"], e["stream"], e["text"]) for e in data["entries"]]
    assert got[:2] == [("first", "stdout", "asking the first question\n"),
                       ("first", "log", "WARNING mixed: first is asked\n")]
    assert ("work", "stdout", "worked on 1\n") in got
    steps = {e["text"]: e["effect_seq"] for e in data["entries"]}
    assert steps["asking the first question\n"] < steps["worked on 1\n"]
    text = ok(world, "logs", rid[:8]).stdout
    line = next(ln for ln in text.splitlines() if "worked on 1" in ln)
    assert f"step {steps['worked on 1' + chr(10)]}  work" in line
    assert "[log]" in text
    refused(world, 1, "logs", "feedfacecafe", needles=("feedfacecafe",))


def test_logs_say_when_older_output_was_dropped(world):
    rid = js(world, "start", "chatty", "--set", "kib=1100")["run_id"]
    data = js(world, "logs", rid)
    assert data["dropped_bytes"] > 0 and data["entries"][-1]["text"].endswith("the last line\n")
    kept = sum(len(e["text"].encode()) for e in data["entries"])
    assert kept <= 1024 * 1024
    assert "of older output dropped" in ok(world, "logs", rid).stdout.splitlines()[0]
    quiet = js(world, "start", "chatty", "--set", "kib=0")["run_id"]
    assert "dropped" not in ok(world, "logs", quiet).stdout


# ---------------------------------------------------------------------------- ledger --follow


def _follower(world, *args):
    # Unbuffered: readline() takes one line off the pipe and no more, so communicate()
    # later gets everything after it.
    return subprocess.Popen(abstractrt_command() + ["ledger", *args, "--follow"], env=world.env,
                            cwd=world.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=0)


def _finish(p):
    try:
        out, err = p.communicate(timeout=60)  # a guard against a hang, not a timing
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return out.decode(), err.decode()


def test_follow_prints_records_as_they_arrive_and_exits_when_the_run_ends(world, tmp_path):
    run, side = mixed_run(world, tmp_path)
    rid = run["run_id"]
    p = _follower(world, rid, "--json")
    try:
        first = [json.loads(p.stdout.readline()) for _ in range(run["ledger_count"])]
        assert [r["seq"] for r in first] == list(range(run["ledger_count"]))
        ok(world, "resume", rid, "--answer", "one")
        # Printed as it arrived: the resume's records come while the run still waits.
        nxt = json.loads(p.stdout.readline())
        assert nxt["seq"] == run["ledger_count"] and nxt["kind"] == "resume"
        assert p.poll() is None
        ok(world, "resume", rid, "--answer", "two")
    finally:
        out, err = _finish(p)
    assert p.returncode == 0, err
    rest = [json.loads(line) for line in out.splitlines()]
    assert first + [nxt] + rest == js(world, "ledger", rid)


def test_follow_exits_3_when_the_run_fails_and_0_when_cancelled(world, tmp_path):
    run, _ = mixed_run(world, tmp_path, "one")
    p = _follower(world, run["run_id"])
    try:
        assert b" start " in p.stdout.readline()
        ok(world, "resume", run["run_id"], "--answer", "boom", code=3)
    finally:
        out, err = _finish(p)
    assert p.returncode == 3, err
    assert "asked to fail" in out and f"run {run['run_id']} failed" in err

    other, _ = mixed_run(world, tmp_path)
    p = _follower(world, other["run_id"], "--json")
    try:
        p.stdout.readline()
        ok(world, "cancel", other["run_id"])
    finally:
        out, err = _finish(p)
    assert p.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["kind"] == "cancel"
    # An ended run: everything at once, then the exit code of how it ended.
    r = ok(world, "ledger", run["run_id"], "--follow", "--json", code=3)
    assert [json.loads(x)["seq"] for x in r.stdout.splitlines()] == list(
        range(len(js(world, "ledger", run["run_id"]))))
    refused(world, 1, "ledger", "feedfacecafe", "--follow", needles=("feedfacecafe",))
    refused(world, 2, "ledger", other["run_id"], "--follow", "--verify")
