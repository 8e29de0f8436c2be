"""Store administration and the settings in effect: reindex, config, shell completion."""

from __future__ import annotations

import os
from typing import Any, Dict, List

from ..core.models import RunStatus
from ..errors import AbstractRTError
from .session import Session, hinted


@hinted
def reindex(s: Session) -> Dict[str, Any]:
    """Rebuild the store's query index from its runs (reads every run: for recovery only)."""
    if s.store_missing():  # no data dir yet: nothing to index, and nothing is created
        return {"runs": 0, "corrupt": 0, "removed": 0, "seconds": 0.0}
    return s.stores.reindex()


def config_report(s: Session) -> Dict[str, Any]:
    """The settings in effect, each with where it came from (``abstractrt config``)."""
    from .. import __version__
    from ..payloads import ENV_MAX_PAYLOAD, max_payload_bytes

    rows = s.settings.describe()
    rows.append({"setting": "max_payload", "value": max_payload_bytes(),
                 "from": "env" if os.environ.get(ENV_MAX_PAYLOAD, "").strip() else "default"})
    return {"version": __version__, "settings": rows}


# ---------------------------------------------------------------------------- completion

MAX_COMPLETIONS = 50


def complete_run_ids(s: Session, incomplete: str) -> List[Dict[str, str]]:
    """Run ids starting with ``incomplete``: waiting runs first, then the most recent.

    Never raises: a shell asking for completions must not see an error.
    """
    out: List[Dict[str, str]] = []
    seen = set()

    def add(run: Any) -> None:
        if run.run_id.startswith(incomplete) and run.run_id not in seen and len(out) < MAX_COMPLETIONS:
            seen.add(run.run_id)
            w = run.waiting
            what = f"{run.workflow_id} · {run.status.value}"
            if w is not None:
                what += f" · {w.prompt or w.wait_key or w.reason.value}"
            out.append({"value": run.run_id, "help": what[:70]})

    try:
        rs = s.run_store
        for run in rs.list_runs(status=RunStatus.WAITING, limit=MAX_COMPLETIONS,
                                on_corrupt=lambda exc: None):
            add(run)
        for run in rs.list_runs(limit=MAX_COMPLETIONS, on_corrupt=lambda exc: None):
            add(run)
        if incomplete and len(out) < MAX_COMPLETIONS:
            for rid in rs.match_prefix(incomplete, limit=MAX_COMPLETIONS):
                run = rs.load(rid)
                if run is not None:
                    add(run)
    except (AbstractRTError, OSError):
        pass
    return out


def complete_workflow_ids(s: Session, incomplete: str) -> List[Dict[str, str]]:
    """Workflow ids of the workflows directory starting with ``incomplete``."""
    try:
        registry = s.workflows.registry
        out = []
        for wid in registry:
            if wid.startswith(incomplete):
                entry = registry.entry(wid)
                doc = ((entry.description or "") if entry else "").strip().splitlines()
                out.append({"value": wid, "help": doc[0][:70] if doc else ""})
        return out
    except (AbstractRTError, OSError):
        return []


def key_init() -> Dict[str, Any]:
    """Create the signing key file (0600, in the user config dir, outside any data dir)."""
    from ..core.integrity import KEY_FILE_NAME, init_signing_key
    from ..settings import user_config_dir

    path = init_signing_key(user_config_dir() / KEY_FILE_NAME)
    return {"key_file": str(path)}


def store_info(s: Session) -> Dict[str, Any]:
    """The store in use, its format or schema version, runs by status, worker heartbeats."""
    stores = s.stores
    info = stores.info()
    audit = stores.audit
    info["workers"] = audit.heartbeats() if audit is not None else []
    return info


def store_copy(s: Session, src: str, dst: str) -> Dict[str, Any]:
    """Copy every run, ledger, event, snapshot, artifact, prune record and log from the
    store ``src`` to the store ``dst`` (each a data dir or a ``postgresql://`` URL),
    verifying every chain on arrival; safe to re-run; the source never changes."""
    from pathlib import Path

    from ..errors import UsageError
    from ..storage import open_stores
    from ..storage.copy import copy_stores

    def opened(where: str, *, create: bool) -> Any:
        url = where if "://" in where else None
        path = Path(where).expanduser().absolute() if url is None else s.settings.data_dir
        return open_stores(url, path, create=create,
                           connect_timeout=getattr(s.settings, "connect_timeout", 5.0))

    if src == dst:
        raise UsageError("store copy: --from and --to name the same store")
    source = opened(src, create=False)
    if url_less_missing(src):
        raise UsageError(f"store copy: there is no data dir at {Path(src).expanduser().absolute()}")
    target = opened(dst, create=True)
    try:
        return copy_stores(source, target)
    finally:
        source.close()
        target.close()


def url_less_missing(where: str) -> bool:
    from pathlib import Path

    return "://" not in where and not Path(where).expanduser().exists()
