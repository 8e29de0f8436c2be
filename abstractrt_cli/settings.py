"""Settings, first found wins: command-line option → environment → config file → default.

The config file is ``config.yaml`` in ``platformdirs.user_config_dir("abstractrt")``
(``ABSTRACTRT_CONFIG`` names another file); its keys are ``data_dir`` and
``workflows_dir``.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from .errors import AbstractRTError

ENV_DATA_DIR = "ABSTRACTRT_DATA_DIR"
ENV_WORKFLOWS = "ABSTRACTRT_WORKFLOWS"
ENV_CONFIG = "ABSTRACTRT_CONFIG"
ENV_ACTOR = "ABSTRACTRT_ACTOR"
CONFIG_KEYS = ("data_dir", "workflows_dir")


class ConfigError(AbstractRTError):
    pass


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    workflows_dir: Path
    data_dir_from: str  # "option" | "env" | "config" | "default": for messages and `--help`
    workflows_dir_from: str


def config_path() -> Path:
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("abstractrt")) / "config.yaml"


def read_config_file(path: Path) -> Dict[str, Any]:
    """The config file's mapping; {} when there is none; ConfigError when it is malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_where(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping with keys {', '.join(CONFIG_KEYS)}")
    unknown = sorted(set(map(str, data)) - set(CONFIG_KEYS))  # str: keys may be 1, true…
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(CONFIG_KEYS)})")
    for key in CONFIG_KEYS:
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"config file {path}: {key} must be a path string")
    return data


def _yaml_where(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}" if mark is not None else str(problem)


def resolve(data_dir: Optional[Path] = None, workflows_dir: Optional[Path] = None) -> Settings:
    """Resolve both settings; reads the config file only when an option and env are missing."""
    found: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    for key, opt, env in (("data_dir", data_dir, ENV_DATA_DIR),
                          ("workflows_dir", workflows_dir, ENV_WORKFLOWS)):
        if opt is not None:
            found[key], sources[key] = Path(opt), "option"
        elif os.environ.get(env):
            found[key], sources[key] = Path(os.environ[env]), "env"
    missing = [k for k in CONFIG_KEYS if k not in found]
    if missing:
        conf = read_config_file(config_path())
        for key in missing:
            if conf.get(key):
                found[key], sources[key] = Path(conf[key]), "config"
    if "data_dir" not in found:
        import platformdirs

        found["data_dir"], sources["data_dir"] = Path(platformdirs.user_data_dir("abstractrt")), "default"
    if "workflows_dir" not in found:
        found["workflows_dir"], sources["workflows_dir"] = Path("workflows"), "default"
    return Settings(
        data_dir=found["data_dir"].expanduser(),
        workflows_dir=found["workflows_dir"].expanduser(),
        data_dir_from=sources["data_dir"],
        workflows_dir_from=sources["workflows_dir"],
    )


def current_actor() -> str:
    """Who is acting, for the ledger: ``ABSTRACTRT_ACTOR``, else the login name."""
    actor = os.environ.get(ENV_ACTOR)
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still record something honest
        return "unknown"
