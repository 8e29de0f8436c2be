"""Settings, first found wins: command-line option → environment → config file → default.

The config file is ``config.yaml`` in ``platformdirs.user_config_dir("abstractrt")``
(``ABSTRACTRT_CONFIG`` names another file, which must then exist); its keys are
``data_dir``, ``workflows_dir``, ``store`` and ``hooks`` (notification hooks, PRODUCT
§7: config file only, read by the commands that move runs) and ``llm`` (the built-in
``llm_call``, PRODUCT §10: config file only, read when a runtime is built). Every setting
remembers where it came from, for ``abstractrt config`` and for messages. Paths are made
absolute here, once, so every message names the directory that was really used.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .core.dc import Frozen
from .errors import ConfigError

ENV_DATA_DIR = "ABSTRACTRT_DATA_DIR"
ENV_WORKFLOWS = "ABSTRACTRT_WORKFLOWS"
ENV_STORE = "ABSTRACTRT_STORE"
ENV_CONFIG = "ABSTRACTRT_CONFIG"
ENV_ACTOR = "ABSTRACTRT_ACTOR"
CONFIG_KEYS = ("data_dir", "workflows_dir", "store", "hooks", "llm")
PATH_KEYS = ("data_dir", "workflows_dir", "store")  # the keys with a string value

# (setting, option, environment variable): the order `abstractrt config` prints them in.
SETTINGS: Tuple[Tuple[str, str, str], ...] = (
    ("data_dir", "--data-dir", ENV_DATA_DIR),
    ("workflows_dir", "--workflows", ENV_WORKFLOWS),
    ("store", "--store", ENV_STORE),
)


@dataclass(init=False, repr=False, eq=False)
class Settings(Frozen):
    data_dir: Path
    workflows_dir: Path
    data_dir_from: str = "option"  # "option" | "env" | "config" | "default"
    workflows_dir_from: str = "option"
    # None: the file store in the data dir; else what ``storage.open_stores`` accepts
    # (a directory, or a ``postgresql://`` URL).
    store: Optional[str] = None
    store_from: str = "default"
    config_file: Optional[Path] = None
    config_file_from: str = "default"  # "env" (ABSTRACTRT_CONFIG) | "default"

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (frozen) ---
    def __init__(
        self,
        data_dir: Path,
        workflows_dir: Path,
        data_dir_from: str = "option",
        workflows_dir_from: str = "option",
        store: Optional[str] = None,
        store_from: str = "default",
        config_file: Optional[Path] = None,
        config_file_from: str = "default",
    ) -> None:
        object.__setattr__(self, 'data_dir', data_dir)
        object.__setattr__(self, 'workflows_dir', workflows_dir)
        object.__setattr__(self, 'data_dir_from', data_dir_from)
        object.__setattr__(self, 'workflows_dir_from', workflows_dir_from)
        object.__setattr__(self, 'store', store)
        object.__setattr__(self, 'store_from', store_from)
        object.__setattr__(self, 'config_file', config_file)
        object.__setattr__(self, 'config_file_from', config_file_from)
    # --- end of the written-out __init__ ---

    @cached_property  # a frozen dataclass without slots: cached in the instance's __dict__
    def llm(self) -> Optional[Dict[str, Any]]:
        """The config key ``llm`` (core/llm.py's keys), or None: ``llm_call`` stays a job."""
        return load_llm(self)

    def describe(self) -> List[Dict[str, Any]]:
        """Each setting with its value and where it came from (``abstractrt config``)."""
        rows: List[Dict[str, Any]] = [
            {"setting": "data_dir", "value": str(self.data_dir), "from": self.data_dir_from},
            {"setting": "workflows_dir", "value": str(self.workflows_dir),
             "from": self.workflows_dir_from},
            {"setting": "store", "value": safe_store_name(self.store, self.data_dir),
             "from": self.store_from},
        ]
        hooks, hooks_from = load_hooks(self)
        rows.append({"setting": "hooks", "from": hooks_from, "hooks": hooks,
                     "value": "; ".join(f"{k}: {v}" for k, v in hooks.items()) or None})
        rows.append(llm_row(self.llm))
        conf = self.config_file
        rows.append({"setting": "config_file", "value": str(conf) if conf else None,
                     "from": self.config_file_from,
                     "exists": bool(conf and conf.is_file())})
        return rows


def safe_store_name(store: Optional[str], data_dir: Path) -> str:
    """The store as it may be printed: a URL without its password."""
    if store is None:
        return f"files in {data_dir}"
    if "://" in store:
        scheme, _, rest = store.partition("://")
        creds, at, host = rest.rpartition("@")
        if at and ":" in creds:
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
    return store


def config_path() -> Path:
    env = os.environ.get(ENV_CONFIG)
    if env:
        return absolute(Path(env))
    return user_config_dir() / "config.yaml"


def user_config_dir() -> Path:
    """``platformdirs.user_config_dir("abstractrt")`` (the config file, the signing key).

    Importing platformdirs costs about 10 ms, a tenth of a command that cron runs every
    minute; on Linux its answer is the XDG rule, so that is used unless it is loaded.
    """
    if sys.platform.startswith("linux") and "platformdirs" not in sys.modules:
        base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.expanduser("~/.config")
        return Path(base) / "abstractrt"
    import platformdirs

    return Path(platformdirs.user_config_dir("abstractrt"))


def absolute(path: Path) -> Path:
    """``~`` expanded and made absolute (not resolved: a symlinked dir keeps its name)."""
    return Path(os.path.abspath(path.expanduser()))


def read_config_file(path: Path, *, must_exist: bool = False) -> Dict[str, Any]:
    """The config file's mapping; {} when there is none; ConfigError when it is malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if must_exist:
            raise _missing_config(path) from None
        return {}
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if not text.strip():
        return {}  # an empty file: nothing to parse, and YAML need not even be imported
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
    for key in PATH_KEYS:
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"config file {path}: {key} must be a "
                              f"{'string' if key == 'store' else 'path string'}")
    if "hooks" in data:
        from .hooks import parse_hooks

        data["hooks"] = parse_hooks(data["hooks"], source=f"config file {path}")
    if data.get("llm") is not None:
        problem = llm_problem(data["llm"], whole=True)
        if problem:
            raise ConfigError(f"config file {path}: llm: {problem}")
    return data


def _config_text(settings: "Settings") -> Optional[str]:
    """The config file's text, read once per ``Settings`` (``llm`` and ``hooks`` both look
    in it): "" when there is none (a missing file was refused by ``resolve`` if it was
    named), None when it cannot be read."""
    cache = settings.__dict__  # (a frozen dataclass: cached as cached_property does)
    if "_config_text" not in cache:
        path = settings.config_file
        try:
            text: Optional[str] = path.read_text(encoding="utf-8") if path is not None else ""
        except (FileNotFoundError, NotADirectoryError):
            text = ""
        except (OSError, UnicodeDecodeError):
            text = None
        cache["_config_text"] = text
    return cache["_config_text"]


def _config_mapping(settings: "Settings") -> Dict[str, Any]:
    """The config file parsed, once per ``Settings`` (``read_config_file``'s errors)."""
    cache = settings.__dict__
    if "_config_mapping" not in cache:
        path = settings.config_file
        cache["_config_mapping"] = read_config_file(path) if path is not None else {}
    return cache["_config_mapping"]


def _config_value(settings: "Settings", key: str) -> Any:
    """A key of the config file; the file is parsed only if its text mentions the key
    (or was parsed already, by ``resolve``)."""
    if "_config_mapping" not in settings.__dict__:
        text = _config_text(settings)
        if text is not None and key not in text:  # (None: read_config_file names the problem)
            return None
    return _config_mapping(settings).get(key)


def load_llm(settings: "Settings") -> Optional[Dict[str, Any]]:
    """The ``llm`` setting (config file only), read when a runtime is built or
    ``abstractrt config`` shows it; a file that never says "llm" is not parsed for it."""
    value = _config_value(settings, "llm")
    return dict(value) if value else None


def llm_row(llm: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The ``llm`` row of ``abstractrt config``: its keys, and whether the variable that
    holds the API key is set (never its value)."""
    if not llm:
        return {"setting": "llm", "value": None, "from": "default", "llm": None}
    parts = []
    for key in ("base_url", "model", "api_key_env", "timeout"):
        if key in llm:
            part = f"{key}={llm[key]}"
            if key == "api_key_env":
                part += " (set)" if os.environ.get(llm[key]) else " (not set)"
            parts.append(part)
    return {"setting": "llm", "value": " ".join(parts), "from": "config", "llm": dict(llm)}


def llm_problem(value: Any, *, whole: bool) -> Optional[str]:
    """What is wrong with an ``llm`` mapping (core/llm.py's keys, and their types), or None.

    ``whole``: the mapping must name ``base_url`` (the config key; a module's ``LLM``
    overrides it key by key and may name only, say, ``model``). A value that may be an
    API key put where a variable's name belongs is never echoed.
    """
    from .core.llm import LLM_KEYS

    if not isinstance(value, dict):
        return f"must be a mapping of {', '.join(LLM_KEYS)}, not {type(value).__name__}"
    if "api_key" in value:
        return ("api_key is not read from files: put the key in an environment variable "
                "and name that variable with api_key_env")
    unknown = sorted(set(map(str, value)) - set(LLM_KEYS))
    if unknown:
        return f"unknown key(s) {', '.join(unknown)} (known: {', '.join(LLM_KEYS)})"
    for key in ("base_url", "model"):
        if key in value and (not isinstance(value[key], str) or not value[key].strip()):
            return f"{key} must be a non-empty string"
    url = value.get("base_url")
    if isinstance(url, str) and not url.startswith(("http://", "https://")):
        return f"base_url must start with http:// or https://, not {url!r}"
    if whole and not url:
        return "base_url is required (e.g. http://localhost:11434/v1 for Ollama)"
    env = value.get("api_key_env")
    if "api_key_env" in value and not (isinstance(env, str) and env.isascii() and env.isidentifier()):
        return ("api_key_env must be the name of an environment variable (letters, digits "
                "and _), not the key itself")
    timeout = value.get("timeout")
    if "timeout" in value and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                               or not timeout > 0):
        return f"timeout must be a number of seconds above 0, not {timeout!r}"
    return None


def load_hooks(settings: "Settings") -> Tuple[Dict[str, Any], str]:
    """The ``hooks`` setting (config file only) and where it came from.

    Read when asked (by a command that may move a run, and ``abstractrt config``), not by
    ``resolve``: the other settings may all come from options and the environment. A
    config file that never says "hooks" is not parsed for it (YAML costs ~30 ms).
    """
    hooks = _config_value(settings, "hooks") or {}
    return hooks, "config" if hooks else "default"


def _missing_config(path: Path) -> ConfigError:
    return ConfigError(f"config file {path} (named by {ENV_CONFIG}) does not exist").with_hint(
        f"create it, or unset {ENV_CONFIG} to use the default location")


def _yaml_where(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}" if mark is not None else str(problem)


def resolve(data_dir: Optional[Path] = None, workflows_dir: Optional[Path] = None,
            store: Optional[str] = None) -> Settings:
    """Resolve every setting; the config file is parsed only when an option and env are missing.

    A config file named by ``ABSTRACTRT_CONFIG`` must exist, whether or not it is needed:
    a typo in a crontab would otherwise go unnoticed.
    """
    named = bool(os.environ.get(ENV_CONFIG))
    conf_file = config_path()
    if named and not conf_file.is_file():
        if conf_file.exists():
            raise ConfigError(f"config file {conf_file} (named by {ENV_CONFIG}) is not a file")
        raise _missing_config(conf_file)
    found: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    options = {"data_dir": data_dir, "workflows_dir": workflows_dir, "store": store}
    for key, _option, env in SETTINGS:
        if options[key] is not None and options[key] != "":
            found[key], sources[key] = options[key], "option"
        elif os.environ.get(env):
            found[key], sources[key] = os.environ[env], "env"
    missing = [k for k in PATH_KEYS if k not in found]
    conf: Optional[Dict[str, Any]] = None
    if missing:
        conf = read_config_file(conf_file, must_exist=named)
        for key in missing:
            if conf.get(key):
                found[key], sources[key] = conf[key], "config"
    if "data_dir" not in found:
        import platformdirs

        found["data_dir"], sources["data_dir"] = platformdirs.user_data_dir("abstractrt"), "default"
    if "workflows_dir" not in found:
        found["workflows_dir"], sources["workflows_dir"] = "workflows", "default"
    store_value = found.get("store")
    if store_value is not None and "://" not in str(store_value):
        store_value = str(absolute(Path(store_value)))  # a store directory: absolute, like the others
    settings = Settings(
        data_dir=absolute(Path(found["data_dir"])),
        workflows_dir=absolute(Path(found["workflows_dir"])),
        data_dir_from=sources["data_dir"],
        workflows_dir_from=sources["workflows_dir"],
        store=store_value,
        store_from=sources.get("store", "default"),
        config_file=conf_file,
        config_file_from="env" if named else "default",
    )
    if conf is not None:
        settings.__dict__["_config_mapping"] = conf  # read once: llm and hooks look in it too
    return settings


def current_actor() -> str:
    """Who is acting, for the ledger: ``ABSTRACTRT_ACTOR``, else the login name."""
    actor = os.environ.get(ENV_ACTOR)
    if actor:
        return actor
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still record something honest
        return "unknown"
