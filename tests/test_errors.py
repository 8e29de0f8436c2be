"""One error policy (issue 16): every error a stable string code and an exit code, the
README's table of codes in step with the classes, ``--json`` errors carrying the code,
one rule for a result's exit code, and hints for people added by ``ops`` only.

``python tests/test_errors.py`` prints the README's table from the classes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cli_helpers import CLI, hold_lock  # noqa: E402

# Codes a ``StoreIOError`` takes from what the environment refused (storage/files/oserrors.py,
# rebuild.py, version.py): documented with the class codes.
STORE_IO_CODES = {
    "permission_denied": "permission denied on a data-dir path (or an immutable file)",
    "read_only": "the file system is read-only: queries work, changes do not",
    "disk_full": "no space left (or quota exceeded); nothing was half-written",
    "is_a_directory": "a directory where a data-dir file belongs",
    "not_a_directory": "a file where a data-dir directory belongs",
    "index_corrupt": "the query index cannot be rebuilt",
    "bad_format_file": "the data dir's format file cannot be read",
}

# Meanings for classes whose docstring does not say (their messages do).
MEANINGS = {
    "error": "any other refusal (the root class)",
    "run_not_found": "no run has this id or prefix",
    "run_ambiguous": "the run id prefix matches several runs",
    "invalid_run_id": "not a run id this store can keep",
    "workflow_not_found": "no workflow has this id in the workflows directory",
    "workflow_duplicate": "two files define the same workflow id",
    "node_not_found": "the workflow has no such node",
    "run_not_waiting": "the run is not waiting (resume, emit)",
    "run_not_failed": "the run has not failed",
    "wait_key_mismatch": "the run waits on another wait key",
    "invalid_choice": "the answer is not one of the prompt's choices",
    "unreadable_file": "a payload, vars or answers file cannot be read",
    "corrupt_run": "a run file cannot be parsed (named, never skipped)",
    "corrupt_ledger": "a ledger line cannot be parsed",
    "ledger_verify_failed": "ledger --verify found a bad record",
    "seq_not_found": "no ledger record with this number",
    "run_busy": "another process holds the run: try again later",
    "interrupted": "Ctrl-C",
}


def error_classes() -> list:
    """Every error class of the package, wherever it is defined (every module imported
    first: the table must not depend on what a test session happened to import)."""
    import importlib
    import pkgutil

    import abstractrt_cli
    from abstractrt_cli.errors import all_error_classes

    for info in pkgutil.walk_packages(abstractrt_cli.__path__, "abstractrt_cli."):
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue  # an optional extra that is not installed (psycopg…)
    return all_error_classes()


def _words(text: str) -> str:
    text = " ".join(text.split()).replace("``", "`")
    return text[:-1] if text.endswith(".") else text


def _from_name(name: str) -> str:
    """``SnapshotNotFoundError`` → "snapshot not found" (a class with no docstring)."""
    words = re.findall(r"[A-Z][a-z0-9]*", name.removesuffix("Error"))
    return " ".join(words).lower() or name


def documented_codes() -> List[Tuple[str, int, str]]:
    """(code, exit, meaning) for the README table, by exit code then code."""
    rows: Dict[str, Tuple[int, str]] = {}
    for cls in error_classes():
        doc = (cls.__doc__ or "").strip().splitlines()
        first = doc[0] if doc and cls.code not in MEANINGS else ""
        meaning = MEANINGS.get(cls.code) or _words(first) or _from_name(cls.__name__)
        first_word = meaning.split()[0]
        if first_word == "A" or (first_word[:1].isupper() and first_word[1:].islower()):
            meaning = meaning[0].lower() + meaning[1:]  # "A bug: …" → "a bug: …"; names stay
        rows[cls.code] = (cls.exit_code, meaning)
    for code, meaning in STORE_IO_CODES.items():
        rows[code] = (1, f"{meaning} (a store_io error)")
    return sorted(((c, e, m) for c, (e, m) in rows.items()), key=lambda r: (r[1], r[0]))


def readme_table() -> str:
    lines = ["| code | exit | meaning |", "|---|---|---|"]
    lines += [f"| `{c}` | {e} | {m} |" for c, e, m in documented_codes()]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- codes


def test_every_error_class_has_its_own_stable_code_and_an_exit_code():
    seen: Dict[str, str] = {}
    for cls in error_classes():
        assert re.fullmatch(r"[a-z][a-z_]*", cls.code), (cls, cls.code)
        assert cls.code not in seen, f"{cls.__name__} and {seen[cls.code]} share {cls.code!r}"
        seen[cls.code] = cls.__name__
        assert cls.exit_code in (1, 2, 4, 130), (cls, cls.exit_code)
    assert set(STORE_IO_CODES).isdisjoint(seen)


def test_the_readme_documents_every_code():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(ln for ln in section.splitlines() if ln.startswith("|"))
    assert table == readme_table(), (
        "README's error codes are out of date; replace its table with the output of "
        "`python tests/test_errors.py`:\n" + readme_table())


# ---------------------------------------------------------------------------- the JSON error


@pytest.fixture
def cli(tmp_path, monkeypatch):
    return CLI(tmp_path, monkeypatch)


def test_json_errors_carry_the_code_the_exit_and_the_message(cli, tmp_path):
    waiting = cli.start("approval")["run_id"]
    done = cli.start("onboarding_account", "--set", "name=Ada")["run_id"]
    cli.start_with_id("approval", "abcdef01-x")
    cli.start_with_id("approval", "abcdef02-y")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [unclosed\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("[]\n")
    cases = [
        (["show", "nosuchrun1"], "run_not_found", 1),
        (["show", "abcdef"], "run_ambiguous", 1),
        (["show", "../etc"], "invalid_run_id", 1),
        (["start", "nope"], "workflow_not_found", 1),
        (["resume", done, "--answer", "x"], "run_not_waiting", 1),
        (["resume", waiting, "--answer", "x", "--wait-key", "k"], "wait_key_mismatch", 1),
        (["resume", waiting, "--answer", "maybe"], "invalid_choice", 1),
        (["resume", waiting, "--payload", "[1]"], "invalid_payload", 1),
        (["resume", waiting, "--payload-file", str(bad_yaml)], "invalid_payload", 1),
        (["resume", waiting, "--payload-file", str(tmp_path / "none.json")], "unreadable_file", 1),
        (["limits", waiting, "--set", "bogus=1"], "invalid_limits", 1),
        (["answer", "--script", str(rules)], "invalid_answer_script", 1),
        (["answer", "--script", str(bad_yaml), "--run", done], "invalid_answer_script", 1),
        (["resume", waiting], "usage", 2),
        (["tick"], "usage", 2),
    ]
    for args, code, exit_code in cases:
        r = cli(*args, "--json")
        assert r.exit_code == exit_code, r.output
        doc = r.json()["error"]
        assert (doc["code"], doc["exit"]) == (code, exit_code), r.output
        assert r.stderr.startswith("error: " + doc["message"]), r.output
    with hold_lock(cli.data_dir, waiting):
        r = cli("resume", waiting, "--answer", "approve", "--json")
        assert r.json()["error"]["code"] == "run_busy" and r.exit_code == 4, r.output
    cli.run_file(done).write_text("{")
    r = cli("show", done, "--json")
    assert r.json()["error"]["code"] == "corrupt_run", r.output


def test_an_internal_error_is_one_line_and_a_json_document(cli, monkeypatch):
    from abstractrt_cli.ops import queries

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(queries, "waiting", boom)
    r = cli("waiting", "--json")
    assert r.exit_code == 1
    assert r.json()["error"]["code"] == "internal"
    assert r.stderr == ("error: internal error: ZeroDivisionError: simulated bug "
                        "(set ABSTRACTRT_DEBUG=1 for a traceback)\n")


# ---------------------------------------------------------------------------- the exit rule


class _Run:
    def __init__(self, status: str) -> None:
        from abstractrt_cli.core.models import RunStatus

        self.status = RunStatus(status)


def test_the_exit_code_of_a_result_is_decided_in_one_place():
    from abstractrt_cli.cli.common import result_exit

    assert result_exit() == 0
    assert result_exit(runs=[_Run("completed"), _Run("waiting")]) == 0
    assert result_exit(runs=[_Run("completed"), _Run("failed")]) == 3
    assert result_exit(failed=2) == 3
    assert result_exit(runs=[_Run("failed")], busy=1) == 4  # try again beats "it failed"
    assert result_exit(runs=[_Run("failed")], busy=1, errors=1) == 1  # a problem comes first


# ---------------------------------------------------------------------------- hints


def test_the_kernel_gives_no_command_line_advice_ops_does(cli):
    from abstractrt_cli import Runtime
    from abstractrt_cli.errors import UnknownRunError
    from abstractrt_cli.ops import queries
    from abstractrt_cli.ops.session import Session
    from abstractrt_cli.settings import resolve

    rs, ls = cli.stores()
    with pytest.raises(UnknownRunError) as kernel:
        Runtime(run_store=rs, ledger_store=ls).get_state("nosuchrun1")
    assert kernel.value.hint is None and "abstractrt" not in str(kernel.value)
    with pytest.raises(UnknownRunError) as op:
        queries.show(Session(resolve()), "nosuchrun1")
    assert op.value.hint == "list runs with `abstractrt runs`"


if __name__ == "__main__":
    print(readme_table())
