"""Settings: option → environment → config file → default, each setting on its own."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Dict, Optional

import pytest

from abstractrt_cli import settings
from abstractrt_cli.errors import AbstractRTError
from abstractrt_cli.settings import ConfigError, current_actor, read_config_file, resolve

LEVELS = ("option", "env", "config")
ENV = {"data_dir": "ABSTRACTRT_DATA_DIR", "workflows_dir": "ABSTRACTRT_WORKFLOWS"}


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No abstractrt variables; HOME and the XDG dirs inside tmp_path. Returns HOME."""
    for name in ("ABSTRACTRT_DATA_DIR", "ABSTRACTRT_WORKFLOWS", "ABSTRACTRT_CONFIG",
                 "ABSTRACTRT_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return home


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- defaults


def test_defaults_with_no_option_env_or_config(tmp_path: Path) -> None:
    s = resolve()
    assert s.data_dir == tmp_path / "xdg-data" / "abstractrt"
    assert s.workflows_dir == Path.cwd() / "workflows"  # absolute: messages name the real dir
    assert (s.data_dir_from, s.workflows_dir_from) == ("default", "default")
    assert (s.store, s.store_from) == (None, "default")
    assert s.config_file == tmp_path / "xdg-config" / "abstractrt" / "config.yaml"
    assert s.config_file_from == "default"


def test_default_locations_follow_platformdirs(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    import platformdirs

    conf_dir = tmp_path / "patched-config"
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda app: str(conf_dir / app))
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / "pd" / app))
    write_config(conf_dir / "abstractrt" / "config.yaml", "workflows_dir: /from/config\n")

    s = resolve()

    assert settings.config_path() == conf_dir / "abstractrt" / "config.yaml"
    assert s.workflows_dir == Path("/from/config") and s.workflows_dir_from == "config"
    assert s.data_dir == tmp_path / "pd" / "abstractrt" and s.data_dir_from == "default"


def test_default_config_file_is_found_through_xdg_config_home(tmp_path: Path) -> None:
    write_config(tmp_path / "xdg-config" / "abstractrt" / "config.yaml",
                 "data_dir: /srv/abstractrt\n")
    s = resolve()
    assert s.data_dir == Path("/srv/abstractrt") and s.data_dir_from == "config"


def test_default_config_file_under_home_without_xdg(monkeypatch: pytest.MonkeyPatch,
                                                    clean_env: Path) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("XDG_DATA_HOME")
    write_config(clean_env / ".config" / "abstractrt" / "config.yaml", "workflows_dir: flows\n")
    s = resolve()
    assert s.workflows_dir == Path.cwd() / "flows" and s.workflows_dir_from == "config"
    assert s.data_dir == clean_env / ".local" / "share" / "abstractrt"


# --------------------------------------------------------------------------- precedence


def _expected(levels: tuple) -> str:
    return next((lv for lv in LEVELS if lv in levels), "default")


COMBOS = [c for n in range(4) for c in itertools.combinations(LEVELS, n)]


def test_precedence_for_each_setting_independently(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf" / "config.yaml"
    monkeypatch.setenv("ABSTRACTRT_CONFIG", str(config))
    defaults = {"data_dir": tmp_path / "xdg-data" / "abstractrt",
                "workflows_dir": Path.cwd() / "workflows"}
    checked = 0
    for data_levels, wf_levels in itertools.product(COMBOS, COMBOS):
        present = {"data_dir": data_levels, "workflows_dir": wf_levels}
        options: Dict[str, Optional[Path]] = {}
        conf_lines = []
        for key, levels in present.items():
            options[key] = tmp_path / f"option-{key}" if "option" in levels else None
            if "env" in levels:
                monkeypatch.setenv(ENV[key], str(tmp_path / f"env-{key}"))
            else:
                monkeypatch.delenv(ENV[key], raising=False)
            if "config" in levels:
                conf_lines.append(f"{key}: {tmp_path / f'config-{key}'}")
        write_config(config, "\n".join(conf_lines) + "\n")

        s = resolve(data_dir=options["data_dir"], workflows_dir=options["workflows_dir"])

        for key, levels in present.items():
            source = _expected(levels)
            want = defaults[key] if source == "default" else tmp_path / f"{source}-{key}"
            where = f"{key} with {levels} (data_dir {data_levels}, workflows_dir {wf_levels})"
            assert getattr(s, key) == want, where
            assert getattr(s, f"{key}_from") == source, where
        checked += 1
    assert checked == 64


def test_empty_environment_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABSTRACTRT_WORKFLOWS", "")
    s = resolve()
    assert s.workflows_dir == Path.cwd() / "workflows" and s.workflows_dir_from == "default"


# --------------------------------------------------------------------------- reading the config


BAD_CONFIGS = {
    "malformed": "data_dir: [unclosed\nworkflows_dir: x\n",
    "not_a_mapping": "- data_dir\n- workflows_dir\n",
    "unknown_key": "data_dirr: /x\n",
    "wrong_type": "data_dir: 5\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_config_is_not_read_when_option_or_env_gives_both(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "config.yaml", BAD_CONFIGS[kind])
    monkeypatch.setenv("ABSTRACTRT_CONFIG", str(config))

    s = resolve(data_dir=tmp_path / "d", workflows_dir=tmp_path / "w", store=str(tmp_path / "s"))
    assert (s.data_dir_from, s.workflows_dir_from, s.store_from) == ("option", "option", "option")

    monkeypatch.setenv("ABSTRACTRT_STORE", str(tmp_path / "es"))
    monkeypatch.setenv("ABSTRACTRT_DATA_DIR", str(tmp_path / "ed"))
    monkeypatch.setenv("ABSTRACTRT_WORKFLOWS", str(tmp_path / "ew"))
    s = resolve()
    assert (s.data_dir, s.workflows_dir) == (tmp_path / "ed", tmp_path / "ew")

    s = resolve(workflows_dir=tmp_path / "w")  # one option, one env
    assert (s.data_dir_from, s.workflows_dir_from) == ("env", "option")

    # With one setting left to find, the config is read and its error reported.
    monkeypatch.delenv("ABSTRACTRT_WORKFLOWS")
    with pytest.raises(ConfigError) as info:
        resolve()
    assert str(config) in str(info.value)


def test_config_is_not_read_at_all_when_not_needed(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    def boom(path: Path) -> dict:
        raise AssertionError("config file read")

    monkeypatch.setattr(settings, "read_config_file", boom)
    monkeypatch.setenv("ABSTRACTRT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("ABSTRACTRT_STORE", str(tmp_path / "s"))
    s = resolve(workflows_dir=tmp_path / "w")
    assert s.data_dir == tmp_path / "d"


# --------------------------------------------------------------------------- config errors


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.yaml", "data_dir: /a\nworkflows_dir: [oops\n\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    msg = str(info.value)
    assert str(path) in msg and "not valid YAML" in msg
    assert msg.endswith("at line 4"), msg  # the flow sequence is still open at the end
    assert "\n" not in msg
    # Exit 2: a wrong config file is how the command was called (PRODUCT.md §4).
    assert isinstance(info.value, AbstractRTError) and info.value.exit_code == 2


def test_yaml_error_line_is_where_the_problem_is(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.yaml", "data_dir: /a\n\nworkflows_dir: x: y\n")
    with pytest.raises(ConfigError, match=r"at line 3\b"):
        read_config_file(path)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_config_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = write_config(tmp_path / "config.yaml", text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert str(path) in str(info.value) and "mapping" in str(info.value)


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.yaml", "data_dir: /a\nworkflow_dir: x\ncolour: red\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "colour, workflow_dir" in msg
    assert "data_dir" in msg and "workflows_dir" in msg  # the known keys, as a hint


def test_unknown_keys_of_mixed_types(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.yaml", "1: x\nfoo: y\ntrue: z\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert str(path) in str(info.value)
    assert "1" in str(info.value) and "foo" in str(info.value)


@pytest.mark.parametrize("text", ["data_dir: 5\n", "workflows_dir: [a, b]\n",
                                  "data_dir: {x: 1}\n", "workflows_dir: yes\n",
                                  "data_dir:\n"])
def test_wrong_value_types(tmp_path: Path, text: str) -> None:
    path = write_config(tmp_path / "config.yaml", text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    key = text.split(":")[0]
    assert str(path) in str(info.value) and key in str(info.value)


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"data_dir: /caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert str(path) in str(info.value)


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_config_file(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_config_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     text: str) -> None:
    path = write_config(tmp_path / "config.yaml", text)
    assert read_config_file(path) == {}
    monkeypatch.setenv("ABSTRACTRT_CONFIG", str(path))
    assert resolve().workflows_dir_from == "default"


def test_missing_named_config_file_is_an_error_even_when_not_needed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in a crontab's ABSTRACTRT_CONFIG must not go unnoticed (issue 9, bug 8)."""
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("ABSTRACTRT_CONFIG", str(missing))
    for kwargs in ({}, {"data_dir": tmp_path / "d", "workflows_dir": tmp_path / "w",
                        "store": str(tmp_path / "s")}):
        with pytest.raises(ConfigError) as info:
            resolve(**kwargs)
        assert str(missing) in str(info.value) and "does not exist" in str(info.value)
        assert info.value.exit_code == 2
    (tmp_path / "adir").mkdir()
    monkeypatch.setenv("ABSTRACTRT_CONFIG", str(tmp_path / "adir"))
    with pytest.raises(ConfigError, match="is not a file"):
        resolve()


def test_missing_default_config_file_means_defaults() -> None:
    s = resolve()  # the fixture's XDG config dir holds no config.yaml
    assert (s.data_dir_from, s.workflows_dir_from, s.store_from) == ("default",) * 3


# --------------------------------------------------------------------------- the store


@pytest.mark.parametrize("level", ["option", "env", "config"])
def test_store_setting_and_its_source(level: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://rt:secret@db.example:5432/rt"
    config = write_config(tmp_path / "c.yaml", f"store: {url}\n" if level == "config" else "")
    monkeypatch.setenv("ABSTRACTRT_CONFIG", str(config))
    if level == "env":
        monkeypatch.setenv("ABSTRACTRT_STORE", url)
    s = resolve(store=url if level == "option" else None)
    assert (s.store, s.store_from) == (url, level)
    assert (s.config_file, s.config_file_from) == (config, "env")
    shown = {row["setting"]: row for row in s.describe()}
    assert shown["store"]["value"] == "postgresql://rt:***@db.example:5432/rt"  # no password
    assert shown["store"]["from"] == level
    assert shown["config_file"] == {"setting": "config_file", "value": str(config),
                                    "from": "env", "exists": True}


def test_a_store_directory_is_made_absolute(monkeypatch: pytest.MonkeyPatch,
                                            clean_env: Path) -> None:
    assert resolve(store="~/rt-store").store == str(clean_env / "rt-store")
    assert resolve(store="rel").store == str(Path.cwd() / "rel")


def test_store_must_be_a_string_in_the_config(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.yaml", "store: 5\n")
    with pytest.raises(ConfigError, match="store must be a string"):
        read_config_file(path)


# --------------------------------------------------------------------------- ~


def test_tilde_is_expanded_everywhere(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    write_config(clean_env / "my.yaml", "workflows_dir: ~/flows\n")
    monkeypatch.setenv("ABSTRACTRT_CONFIG", "~/my.yaml")
    assert settings.config_path() == clean_env / "my.yaml"

    s = resolve(data_dir=Path("~/data"))
    assert s.data_dir == clean_env / "data"
    assert s.workflows_dir == clean_env / "flows" and s.workflows_dir_from == "config"

    monkeypatch.setenv("ABSTRACTRT_DATA_DIR", "~/envdata")
    monkeypatch.setenv("ABSTRACTRT_WORKFLOWS", "~/envflows")
    s = resolve()
    assert (s.data_dir, s.workflows_dir) == (clean_env / "envdata", clean_env / "envflows")


# --------------------------------------------------------------------------- actor


def test_current_actor_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABSTRACTRT_ACTOR", "ci-bot")
    assert current_actor() == "ci-bot"


def test_current_actor_falls_back_to_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    monkeypatch.setenv("ABSTRACTRT_ACTOR", "")
    monkeypatch.setattr(getpass, "getuser", lambda: "ada")
    assert current_actor() == "ada"


def test_current_actor_without_a_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert current_actor() == "unknown"
