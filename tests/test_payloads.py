"""Payloads from the command line: inline JSON, JSON/YAML files, stdin, KEY=VALUE pairs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from abstractrt_cli.errors import InputFileError, PayloadError, UsageError
from abstractrt_cli.payloads import (
    build_payload,
    build_vars,
    load_object_file,
    parse_document,
    parse_json_object,
    parse_set_pairs,
    yaml_load,
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- inline JSON


def test_parse_json_object_valid() -> None:
    assert parse_json_object('{"response": "yes", "n": [1, 2], "x": null}') == {
        "response": "yes", "n": [1, 2], "x": None}
    assert parse_json_object("  {}\n") == {}


def test_parse_json_object_invalid_says_line_and_column() -> None:
    with pytest.raises(PayloadError) as info:
        parse_json_object('{\n  "a": 1,\n  "b": oops\n}')
    assert str(info.value) == "payload is not valid JSON: Expecting value at line 3 column 8"
    assert info.value.exit_code == 1
    assert isinstance(info.value, ValueError)


def test_parse_json_object_names_what_it_parses() -> None:
    with pytest.raises(PayloadError, match=r"^--vars is not valid JSON"):
        parse_json_object("{'single': 'quotes'}", what="--vars")


@pytest.mark.parametrize("text, kind", [("[1, 2]", "list"), ("3", "int"), ('"yes"', "str"),
                                        ("null", "null"), ("true", "bool")])
def test_parse_json_object_refuses_non_objects(text: str, kind: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_json_object(text)
    assert str(info.value) == f"payload must be a JSON object, not {kind}"


# --------------------------------------------------------------------------- files


def test_json_file_is_strict_json(tmp_path: Path) -> None:
    good = write(tmp_path, "p.json", '{"response": "ok"}')
    assert load_object_file(good) == {"response": "ok"}
    for name in ("yamlish.json", "UPPER.JSON"):
        bad = write(tmp_path, name, "response: ok\nother: 1\n")
        with pytest.raises(PayloadError) as info:
            load_object_file(bad)
        assert str(info.value) == (f"payload in {bad} is not valid JSON: Expecting value at "
                                   "line 1 column 1")


@pytest.mark.parametrize("name", ["p.yaml", "p.yml", "p.txt", "payload"])
def test_yaml_and_other_files_are_yaml(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, "response: ok\nnested:\n  n: 3\n  list: [a, 2]\n")
    assert load_object_file(path) == {"response": "ok", "nested": {"n": 3, "list": ["a", 2]}}


def test_other_files_may_hold_json(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", '{"a": {"b": [1, 2.5, null]}}')
    assert load_object_file(path) == {"a": {"b": [1, 2.5, None]}}


def test_stdin(tmp_path: Path) -> None:
    assert load_object_file("-", stdin=io.StringIO('{"a": 1}')) == {"a": 1}
    assert load_object_file("-", stdin=io.StringIO("a: 1\nb: two\n")) == {"a": 1, "b": "two"}
    with pytest.raises(PayloadError) as info:
        load_object_file("-", stdin=io.StringIO("\n  \n"))
    assert str(info.value) == "payload in standard input is empty"
    with pytest.raises(PayloadError,
                       match=r"^vars in standard input must be a JSON object, not list"):
        load_object_file("-", stdin=io.StringIO("- a\n- b\n"), what="vars")


def test_stdin_is_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("response: from the pipe\n"))
    assert load_object_file("-") == {"response": "from the pipe"}


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(InputFileError) as info:
        load_object_file(path)
    assert str(info.value) == f"cannot read {path}: no such file"
    assert info.value.path == path and info.value.exit_code == 1
    assert isinstance(info.value, OSError)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as info:
        load_object_file(str(tmp_path))
    assert str(info.value) == f"cannot read {tmp_path}: is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("response: café\n".encode("latin-1"))
    with pytest.raises(InputFileError) as info:
        load_object_file(str(path))
    assert str(info.value) == f"cannot read {path}: not UTF-8 text"


@pytest.mark.parametrize("name", ["empty.json", "empty.yaml"])
@pytest.mark.parametrize("text", ["", "   \n\n"])
def test_empty_file(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(PayloadError) as info:
        load_object_file(path)
    assert str(info.value) == f"payload in {path} is empty"


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just text\n", "str"),
                                        ("~\n", "null"), ("# comment only\n", "null")])
def test_yaml_file_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, "p.yaml", text)
    with pytest.raises(PayloadError) as info:
        load_object_file(path)
    assert str(info.value) == f"payload in {path} must be a JSON object, not {kind}"


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "a: 1\nb: [unclosed\nc: 3\n")
    with pytest.raises(PayloadError) as info:
        load_object_file(path)
    msg = str(info.value)
    assert msg.startswith(f"payload in {path} is neither valid JSON nor YAML: ")
    assert "at line 3" in msg and "\n" not in msg


def test_explicit_yaml_tags_that_json_cannot_store(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "blob: !!binary aGVsbG8=\n")
    with pytest.raises(PayloadError, match="JSON cannot store"):
        load_object_file(path)


# --------------------------------------------------------------------------- YAML 1.2 scalars


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF"])
def test_yaml_11_booleans_stay_strings(tmp_path: Path, word: str) -> None:
    path = write(tmp_path, "answer.yaml", f"response: {word}\n")
    assert load_object_file(path) == {"response": word}
    assert yaml_load(f"- {word}") == [word]


@pytest.mark.parametrize("word, value", [("true", True), ("false", False), ("True", True),
                                         ("FALSE", False)])
def test_yaml_true_false_are_booleans(tmp_path: Path, word: str, value: bool) -> None:
    path = write(tmp_path, "p.yaml", f"flag: {word}\n")
    assert load_object_file(path) == {"flag": value}


def test_yaml_12_numbers_dates_and_times() -> None:
    doc = yaml_load(
        "time: 10:30\nzero_led: 010\nunderscored: 1_000\nday: 2026-01-01\n"
        "stamp: 2026-01-01T10:00:00Z\nint: -7\nhex: 0x1F\noct: 0o17\nfloat: 1.5\n"
        "exp: 1e3\nnothing: ~\nequals: =\n")
    assert doc == {
        "time": "10:30",  # YAML 1.1 would read 630 (base 60)
        "zero_led": 10,  # not octal 8
        "underscored": "1_000",
        "day": "2026-01-01",  # not a date object, which JSON could not store
        "stamp": "2026-01-01T10:00:00Z",
        "int": -7, "hex": 31, "oct": 15, "float": 1.5, "exp": 1000.0,
        "nothing": None,
        "equals": "=",
    }
    json.dumps(doc)


def test_parse_document_json_first_then_yaml() -> None:
    assert parse_document('{"a": "yes"}', source="x") == {"a": "yes"}
    assert parse_document("a: yes\n", source="x") == {"a": "yes"}
    assert parse_document("[1, 2]", source="x") == [1, 2]
    with pytest.raises(PayloadError, match=r"^answers in f.yaml is neither valid JSON nor YAML"):
        parse_document("a: [\n", source="f.yaml", what="answers")


# --------------------------------------------------------------------------- --set pairs


def test_set_values_are_json_or_strings() -> None:
    pairs = ["n=3", "f=1.5", "t=true", "no=false", "z=null", 'o={"a": [1]}', "l=[1, 2]",
             "s=hello world", 'q="7"', "e=", "eq=a=b", "yes=yes"]
    assert parse_set_pairs(pairs) == {
        "n": 3, "f": 1.5, "t": True, "no": False, "z": None, "o": {"a": [1]}, "l": [1, 2],
        "s": "hello world", "q": "7", "e": "", "eq": "a=b", "yes": "yes",
    }


def test_set_dotted_keys_nest() -> None:
    assert parse_set_pairs(["a.b.c=1", "a.b.d=x", "a.e=true", "top=2"]) == {
        "a": {"b": {"c": 1, "d": "x"}, "e": True}, "top": 2}
    # A later pair wins; a dotted key under a non-object replaces it with an object.
    assert parse_set_pairs(["a=1", "a.b=2"]) == {"a": {"b": 2}}
    assert parse_set_pairs(["a.b=2", "a=1"]) == {"a": 1}


@pytest.mark.parametrize("pair", ["novalue", "=value", " =x", "a..b=1", ".a=1", "a.=1"])
def test_set_malformed_pairs_are_usage_errors(pair: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_set_pairs(["ok=1", pair], option="--set")
    assert info.value.exit_code == 2
    assert "--set" in str(info.value)


def test_set_error_names_the_option() -> None:
    with pytest.raises(UsageError, match=r"^--limit expects KEY=VALUE, got 'x'$"):
        parse_set_pairs(["x"], option="--limit")


# --------------------------------------------------------------------------- build_payload


@pytest.mark.parametrize("given", [
    {"payload": "{}", "payload_file": "p.json"},
    {"payload": "{}", "answer": "yes"},
    {"payload_file": "p.json", "answer": "yes"},
    {"payload": "{}", "payload_file": "p.json", "answer": "yes"},
])
def test_payload_sources_are_exclusive(given: dict) -> None:
    with pytest.raises(UsageError) as info:
        build_payload(**given)
    assert info.value.exit_code == 2
    for key in given:
        assert "--" + key.replace("_", "-") in str(info.value)


def test_each_payload_source(tmp_path: Path) -> None:
    assert build_payload(required=False) == {}
    assert build_payload(payload="{}") == {}  # an empty payload, on purpose
    assert build_payload(payload='{"a": 1}') == {"a": 1}
    assert build_payload(answer="yes") == {"response": "yes"}
    assert build_payload(answer="") == {"response": ""}
    assert build_payload(payload_file=write(tmp_path, "p.yaml", "a: on\n")) == {"a": "on"}
    assert build_payload(payload_file="-", stdin=io.StringIO('{"b": 2}')) == {"b": 2}
    assert build_payload(sets=["a=1"]) == {"a": 1}


def test_set_merges_on_top_of_any_source(tmp_path: Path) -> None:
    assert build_payload(answer="yes", sets=["reason=freeze week"]) == {
        "response": "yes", "reason": "freeze week"}
    assert build_payload(payload='{"a": 1, "b": 2}', sets=["b=3", "c=4"]) == {
        "a": 1, "b": 3, "c": 4}
    path = write(tmp_path, "p.json", '{"response": "no"}')
    assert build_payload(payload_file=path, sets=["response=yes"]) == {"response": "yes"}


def test_dotted_set_keeps_the_rest_of_a_nested_object() -> None:
    base = '{"meta": {"who": "ada", "why": "test"}, "n": 1}'
    assert build_payload(payload=base, sets=["meta.why=release"]) == {
        "meta": {"who": "ada", "why": "release"}, "n": 1}
    assert build_vars(vars_json=base, vars_file=None, sets=["meta.when=now"]) == {
        "meta": {"who": "ada", "why": "test", "when": "now"}, "n": 1}


def test_bad_payload_errors_pass_through() -> None:
    with pytest.raises(PayloadError):
        build_payload(payload="[1]")
    with pytest.raises(UsageError):
        build_payload(payload="{}", sets=["nokey"])


def test_build_vars(tmp_path: Path) -> None:
    assert build_vars(vars_json=None, vars_file=None, sets=None) == {}
    assert build_vars(vars_json='{"a": 1}', vars_file=None, sets=["b=2"]) == {"a": 1, "b": 2}
    path = write(tmp_path, "v.yaml", "name: ada\nok: yes\n")
    assert build_vars(vars_json=None, vars_file=path, sets=None) == {"name": "ada", "ok": "yes"}
    with pytest.raises(UsageError) as info:
        build_vars(vars_json="{}", vars_file=path, sets=None)
    assert info.value.exit_code == 2
    with pytest.raises(PayloadError, match=r"^--vars must be a JSON object"):
        build_vars(vars_json="[]", vars_file=None, sets=None)
    with pytest.raises(PayloadError, match=rf"^vars in {path} must be a JSON object"):
        build_vars(vars_json=None, vars_file=write(tmp_path, "v.yaml", "- 1\n"), sets=None)


def test_set_values_that_are_not_standard_json_stay_text():
    from abstractrt_cli.payloads import parse_set_pairs

    assert parse_set_pairs(["x=NaN", "y=Infinity", "z=-Infinity"]) == {
        "x": "NaN", "y": "Infinity", "z": "-Infinity"}


def test_a_payload_source_is_required() -> None:
    """Issue 9, bug 1: no payload option silently resumed with {} (it consumed an LLM job)."""
    with pytest.raises(UsageError) as info:
        build_payload()
    assert info.value.exit_code == 2
    for option in ("--payload", "--payload-file", "--answer", "--set"):
        assert option in str(info.value)
    assert "--payload '{}'" in str(info.value)


# --------------------------------------------------------------------------- limits (PRODUCT §5a)


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    import time

    path = write(tmp_path, "bomb.yaml", BILLION_LAUGHS)
    t0 = time.perf_counter()
    with pytest.raises(PayloadError) as info:
        load_object_file(path)
    assert time.perf_counter() - t0 < 0.5  # refused by counting, never expanded
    assert str(path) in str(info.value) and "alias" in str(info.value)
    assert info.value.exit_code == 1


def test_yaml_aliases_within_bounds_still_work(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.yaml", "base: &b {region: eu, size: 2}\nweb: *b\ndb: *b\n")
    assert load_object_file(path) == {"base": {"region": "eu", "size": 2},
                                      "web": {"region": "eu", "size": 2},
                                      "db": {"region": "eu", "size": 2}}


def test_too_many_yaml_aliases_are_refused(tmp_path: Path) -> None:
    from abstractrt_cli.payloads import MAX_YAML_ALIASES

    items = ", ".join(["*x"] * (MAX_YAML_ALIASES + 1))
    path = write(tmp_path, "many.yaml", f"x: &x 1\nys: [{items}]\n")
    with pytest.raises(PayloadError, match="aliases"):
        load_object_file(path)


def test_a_recursive_yaml_document_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yaml", "a: &a [1, *a]\n")
    with pytest.raises(PayloadError, match="refers to itself"):
        load_object_file(path)


@pytest.mark.parametrize("depth", [201, 1_000, 50_000])
@pytest.mark.parametrize("kind", ["json-inline", "json-file", "yaml-flow", "yaml-block"])
def test_deep_nesting_is_refused_without_recursion_error(tmp_path: Path, kind: str,
                                                         depth: int) -> None:
    from abstractrt_cli.payloads import MAX_DEPTH

    assert depth > MAX_DEPTH
    if kind == "yaml-block":
        if depth > 1_000:
            pytest.skip("block nesting grows with the square of the depth: 1,000 is plenty")
        text = "".join(f"{' ' * i}k:\n" for i in range(depth)) + f"{' ' * depth}v\n"
    elif kind == "yaml-flow":  # not JSON, so it is YAML's parser that meets the depth
        text = "a: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n"
    else:
        text = '{"a": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    with pytest.raises(PayloadError, match=f"nested more than {MAX_DEPTH} levels"):
        if kind == "json-inline":
            build_payload(payload=text)
        else:
            name = "deep.json" if kind == "json-file" else "deep.yaml"
            load_object_file(write(tmp_path, name, text))


def test_nesting_within_the_bound_is_fine() -> None:
    from abstractrt_cli.payloads import MAX_DEPTH

    text = '{"a": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
    assert build_payload(payload=text)["a"] is not None


@pytest.mark.parametrize("text", ['{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}',
                                  '{"x": 1e400}'])
def test_nan_and_infinity_are_refused_in_json(tmp_path: Path, text: str) -> None:
    with pytest.raises(PayloadError, match="NaN and Infinity are not JSON"):
        build_payload(payload=text)
    with pytest.raises(PayloadError, match="NaN and Infinity are not JSON"):
        load_object_file(write(tmp_path, "p.json", text))


@pytest.mark.parametrize("text", ["x: .nan\n", "x: .inf\n", "x: -.Inf\n", "x: !!float nan\n",
                                  "x: [1, .NaN]\n"])
def test_nan_and_infinity_are_refused_in_yaml(tmp_path: Path, text: str) -> None:
    with pytest.raises(PayloadError, match="NaN and Infinity are not JSON"):
        load_object_file(write(tmp_path, "p.yaml", text))


def test_payload_size_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABSTRACTRT_MAX_PAYLOAD", "1k")
    small = '{"a": "' + "x" * 900 + '"}'
    big = '{"a": "' + "x" * 1100 + '"}'
    assert build_payload(payload=small)["a"].startswith("x")
    with pytest.raises(PayloadError, match="more than the limit of 1.0 kB") as info:
        build_payload(payload=big)
    assert "ABSTRACTRT_MAX_PAYLOAD" in str(info.value)
    path = write(tmp_path, "big.json", big)
    with pytest.raises(PayloadError, match=f"payload file {path} is 1.1 kB, more than"):
        load_object_file(path)
    with pytest.raises(PayloadError, match="standard input"):
        load_object_file("-", stdin=io.StringIO(big))
    with pytest.raises(PayloadError):
        build_payload(answer="y" * 2000)
    with pytest.raises(PayloadError):
        build_vars(vars_json=big, vars_file=None, sets=None)


def test_payload_size_cap_defaults_to_16_mb(monkeypatch: pytest.MonkeyPatch) -> None:
    from abstractrt_cli.payloads import max_payload_bytes

    monkeypatch.delenv("ABSTRACTRT_MAX_PAYLOAD", raising=False)
    assert max_payload_bytes() == 16 * 1024 * 1024
    for text, n in (("500k", 500 * 1024), ("2M", 2 * 1024 ** 2), ("1048576", 1048576),
                    ("1.5mb", int(1.5 * 1024 ** 2))):
        monkeypatch.setenv("ABSTRACTRT_MAX_PAYLOAD", text)
        assert max_payload_bytes() == n


@pytest.mark.parametrize("bad", ["lots", "-1", "0", "12q", "nan"])
def test_a_bad_payload_size_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                                      bad: str) -> None:
    from abstractrt_cli.errors import ConfigError
    from abstractrt_cli.payloads import max_payload_bytes

    monkeypatch.setenv("ABSTRACTRT_MAX_PAYLOAD", bad)
    with pytest.raises(ConfigError, match="ABSTRACTRT_MAX_PAYLOAD"):
        max_payload_bytes()
