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

import os
import stat
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import SignatureError
from .models import RunState
from .sha import sha256

ENV_SIGNING_KEY = "ABSTRACTRT_SIGNING_KEY"
KEY_FILE_NAME = "signing.key"
_EXCLUDED = ("updated_at", "ledger_count", "ledger_head", "checkpoint_sig")


def _canonical(data: Any) -> bytes:
    import json

    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def json_copy(value: Any) -> Any:
    """A deep copy through JSON (what a store would give back)."""
    import json

    return json.loads(json.dumps(value))


def state_digest(run: RunState) -> str:
    """The digest of the state a checkpoint holds. Raises TypeError/ValueError if the
    state is not JSON (a ``datetime`` in vars, NaN...): such a state cannot be saved."""
    doc = run.to_jsonable()
    for k in _EXCLUDED:
        doc.pop(k, None)
    return sha256(_canonical(doc)).hexdigest()


def state_digest_of(doc: Dict[str, Any]) -> str:
    """``state_digest`` of a run file's JSON document (for verification)."""
    clean = {k: v for k, v in doc.items() if k not in _EXCLUDED}
    return sha256(_canonical(clean)).hexdigest()


def sign_checkpoint(key: bytes, run_id: str, count: int, head: Optional[str],
                    digest: Optional[str]) -> str:
    msg = f"abstractrt-checkpoint-v1\n{run_id}\n{count}\n{head or ''}\n{digest or ''}"
    import hashlib
    import hmac  # only with a signing key

    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).hexdigest()


def check_signature(key: bytes, sig: Optional[str], run_id: str, count: int,
                    head: Optional[str], digest: Optional[str]) -> bool:
    if not sig:
        return False
    import hmac

    return hmac.compare_digest(sig, sign_checkpoint(key, run_id, count, head, digest))


def default_key_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("abstractrt")) / KEY_FILE_NAME


def _decode(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) < 32:
        raise SignatureError(f"signing key from {where} is too short: use at least 32 "
                             "characters")
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
                                 f"(mode {stat.S_IMODE(st.st_mode):o}); it must be mode 600")
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


def verify_run(run: RunState, records: Any, *, key: Optional[bytes] = None) -> Dict[str, Any]:
    """``ledger --verify``: the chain, the checkpoint against it, the state digest, the
    records beyond the checkpoint, and (with a key) the checkpoint's signature.

    The report is ``verify_ledger_chain``'s, plus ``state`` ("proved", "not covered",
    "mismatch"), ``beyond`` (records after the checkpoint), ``signature`` ("valid",
    "invalid", "unsigned", "no key") and ``ok``.
    """
    from ..storage.chain import verify_ledger_chain

    report = verify_ledger_chain(records, expected_count=run.ledger_count,
                                 expected_head=run.ledger_head)
    problems = [] if report["ok"] else [report["message"]]
    count = run.ledger_count
    beyond = len(records) - count if report["ok"] else 0
    report["beyond"] = beyond
    digest = None
    if report["ok"] and count > 0:
        digest = records[count - 1].get("state_digest")
        if digest is None:
            report["state"] = "not covered"  # a run checkpointed by an older abstractrt
        elif digest != state_digest(run):
            report["state"] = "mismatch"
            problems.append(f"the run's checkpointed state does not match the digest in "
                            f"record {count - 1}: the run file was edited")
        else:
            report["state"] = "proved"
    else:
        report["state"] = "not covered"
    if beyond and run.status.is_terminal:
        problems.append(f"{beyond} record(s) after the final checkpoint of this "
                        f"{run.status.value} run (appended after it ended: forged?)")
    elif beyond:
        report["pending"] = f"{beyond} record(s) pending, beyond the checkpoint"
    if key is None:
        report["signature"] = "unsigned" if not run.checkpoint_sig else "no key"
    elif not run.checkpoint_sig:
        report["signature"] = "unsigned"
    elif check_signature(key, run.checkpoint_sig, run.run_id, count, run.ledger_head, digest):
        report["signature"] = "valid"
    else:
        report["signature"] = "invalid"
        problems.append("the checkpoint's signature does not match: the ledger and run file "
                        "were rewritten, or signed with another key")
    report["ok"] = not problems
    report["problems"] = problems
    if problems:
        report["message"] = problems[0]
    return report
