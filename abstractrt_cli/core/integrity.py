"""What makes a checkpoint provable: the state digest in the chain, and signatures.

- ``state_digest(run)``: SHA-256 of the run's state as checkpointed, without the fields
  that describe the checkpoint itself (ledger count and head, signature, ``updated_at``).
  The record a checkpoint covers last carries it (``state_digest``), so the hash chain
  proves the run file: an edit of its vars or output no longer matches.
- Signed checkpoints: with a key (``ABSTRACTRT_SIGNING_KEY``, or the key file that
  ``abstractrt key init`` creates in the user config dir), each checkpoint carries
  ``checkpoint_sig`` = HMAC-SHA256(key, run id, ledger count, ledger head, state digest).
  Rewriting the chain *and* the run file is then detected too, by anyone holding the
  key, which lives outside the data dir.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import SignatureError
from .models import RunState

ENV_SIGNING_KEY = "ABSTRACTRT_SIGNING_KEY"
KEY_FILE_NAME = "signing.key"
_EXCLUDED = ("updated_at", "ledger_count", "ledger_head", "checkpoint_sig")


def _canonical(data: Any) -> bytes:
    import json

    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def state_digest(run: RunState) -> str:
    """The digest of the state a checkpoint holds. Raises TypeError/ValueError if the
    state is not JSON (a ``datetime`` in vars, NaN...): such a state cannot be saved."""
    doc = run.to_jsonable()
    for k in _EXCLUDED:
        doc.pop(k, None)
    return hashlib.sha256(_canonical(doc)).hexdigest()


def state_digest_of(doc: Dict[str, Any]) -> str:
    """``state_digest`` of a run file's JSON document (for verification)."""
    clean = {k: v for k, v in doc.items() if k not in _EXCLUDED}
    return hashlib.sha256(_canonical(clean)).hexdigest()


def sign_checkpoint(key: bytes, run_id: str, count: int, head: Optional[str],
                    digest: Optional[str]) -> str:
    msg = f"abstractrt-checkpoint-v1\n{run_id}\n{count}\n{head or ''}\n{digest or ''}"
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).hexdigest()


def check_signature(key: bytes, sig: Optional[str], run_id: str, count: int,
                    head: Optional[str], digest: Optional[str]) -> bool:
    if not sig:
        return False
    return hmac.compare_digest(sig, sign_checkpoint(key, run_id, count, head, digest))


def default_key_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("abstractrt")) / KEY_FILE_NAME


def _decode(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) < 32:
        raise SignatureError(f"signing key from {where} is too short: use at least 32 "
                             "characters (abstractrt key init makes one)")
    return text.encode("utf-8")


def load_signing_key(path: Optional[Path] = None) -> Optional[bytes]:
    """The signing key from the environment or the key file, or None if there is none."""
    env = os.environ.get(ENV_SIGNING_KEY)
    if env:
        return _decode(env, ENV_SIGNING_KEY)
    path = path or default_key_path()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SignatureError(f"cannot read signing key {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SignatureError(f"signing key {path} is readable by others "
                                 f"(mode {stat.S_IMODE(st.st_mode):o}): chmod 600 it")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    return _decode(data.decode("utf-8", "replace"), str(path))


def init_signing_key(path: Optional[Path] = None) -> Path:
    """Create a new random key file (0600); refuses to replace an existing one."""
    import secrets

    path = path or default_key_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except FileExistsError:
        raise SignatureError(f"signing key {path} exists already; delete it first to make "
                             "a new one (checkpoints signed with it then no longer verify)"
                             ) from None
    except OSError as exc:
        raise SignatureError(f"cannot create signing key {path}: {exc.strerror or exc}") from None
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path
