"""`ebrain gateway provision`: Mosquitto password and ACL files from a device inventory.

Secrets are generated once: a device (or the gateway user) that already has a password in `credentials.json`
keeps it, so re-running after adding devices changes nothing for the others. Every secret file is written
with mode 0600 (created that way, never chmod-ed after the fact) and no secret is ever logged or printed.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.core.provision import GATEWAY_USER, SALT_BYTES, DeviceId, acl_file, parse_inventory, password_file
from gateway.core.provision import password_hash as _hash

CREDENTIALS = "credentials.json"
PASSWD_NAME = "mosquitto.passwd"  # noqa: S105 - a file name, not a secret
ACL_NAME = "mosquitto.acl"


@dataclass(frozen=True)
class Provisioned:
    """What `provision` wrote: paths and counts only (never secrets)."""

    out_dir: Path
    devices: int
    new_users: int
    password_file: Path
    acl_file: Path
    credentials: Path

    def to_json(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically replace `path` with `text`; the temporary file is created with `mode` from the start."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_credentials(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    users = json.loads(path.read_text())["users"]
    return {str(u): str(p) for u, p in users.items()}


def provision(inventory: Path, out_dir: Path, *, gateway_user: str = GATEWAY_USER) -> Provisioned:
    """Write `mosquitto.passwd`, `mosquitto.acl` and `credentials.json` (plain passwords, 0600) into `out_dir`."""
    devices = parse_inventory(inventory.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    creds_path = out_dir / CREDENTIALS
    known = _load_credentials(creds_path)
    users = [gateway_user, *(d.username for d in devices)]
    new = [u for u in users if u not in known]
    passwords = {u: known.get(u) or secrets.token_urlsafe(24) for u in users}
    if new or set(known) != set(users):
        doc = {"users": passwords, "devices": [{"tenant": d.tenant, "device": d.device, "username": d.username}
                                               for d in devices], "gateway_user": gateway_user}
        _write_private(creds_path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    hashes = {u: _hash(p, secrets.token_bytes(SALT_BYTES)) for u, p in passwords.items()}
    _write_private(out_dir / PASSWD_NAME, password_file(hashes))
    _write_private(out_dir / ACL_NAME, acl_file(devices, gateway_user=gateway_user), mode=0o644)
    return Provisioned(out_dir, len(devices), len(new), out_dir / PASSWD_NAME, out_dir / ACL_NAME, creds_path)


def credentials_for(out_dir: Path, device: DeviceId | None = None) -> tuple[str, str]:
    """(username, password) of a device, or of the gateway user, from `credentials.json`."""
    doc = json.loads((out_dir / CREDENTIALS).read_text())
    user = device.username if device is not None else doc["gateway_user"]
    return user, doc["users"][user]
