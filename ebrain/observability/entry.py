"""Container entrypoint: `python -m ebrain.observability.entry [options] -- <ebrain args>`.

Why it exists: compose cannot read the passwords that `ebrain gateway provision` writes to credentials.json.
So this entrypoint, in the one process that then runs the `ebrain` command:

- with `--gateway-credentials FILE`, logs in to MQTT as the provisioned gateway user;
- with `--claim-dir DIR --device-credentials FILE`, claims one provisioned device no other replica holds (an
  exclusive file per device in a shared volume, keyed by hostname so a restarted container keeps its device),
  which is how `docker compose up --scale edge=N` gives N replicas N distinct identities.

Metrics are the command's own: every service serves /metrics on EBRAIN_METRICS_ADDR:EBRAIN_METRICS_PORT (the
images set 0.0.0.0:9100; the default 127.0.0.1 suits a laptop).

`python -m ebrain.observability.entry probe PORT` is the health check: exit 0 if /metrics answers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.request
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class NoDeviceLeftError(RuntimeError):
    """Every provisioned device is claimed by another replica: provision more or scale down."""


@dataclass(frozen=True)
class Identity:
    """MQTT login (and, for a device, who it is)."""

    username: str
    password: str
    tenant: str | None = None
    device: str | None = None

    def apply(self, env: MutableMapping[str, str]) -> None:
        """Export as EBRAIN_* settings for the command run next."""
        env["EBRAIN_MQTT__USERNAME"] = self.username
        env["EBRAIN_MQTT__PASSWORD"] = self.password
        if self.tenant and self.device:
            env["EBRAIN_TENANT"] = self.tenant
            env["EBRAIN_DEVICE"] = self.device


def gateway_identity(credentials: Path) -> Identity:
    """The gateway user's login from a credentials.json written by `ebrain gateway provision`."""
    doc = json.loads(credentials.read_text())
    user = doc["gateway_user"]
    return Identity(user, doc["users"][user])


def claim_device(credentials: Path, claim_dir: Path, owner: str) -> Identity:
    """Claim the first device not held by another owner; an owner that already holds one gets it back."""
    doc = json.loads(credentials.read_text())
    claim_dir.mkdir(parents=True, exist_ok=True)
    devices = sorted(doc["devices"], key=lambda d: (d["tenant"], d["device"]))
    for d in devices:  # a restarted container finds its earlier claim first
        path = claim_dir / d["username"]
        if path.exists() and path.read_text() == owner:
            return Identity(d["username"], doc["users"][d["username"]], d["tenant"], d["device"])
    for d in devices:
        path = claim_dir / d["username"]
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as out:
            out.write(owner)
        return Identity(d["username"], doc["users"][d["username"]], d["tenant"], d["device"])
    raise NoDeviceLeftError(f"all {len(devices)} provisioned devices are claimed (see {claim_dir})")


def probe(port: int, timeout_s: float = 3.0) -> int:
    """Health check: 0 when http://127.0.0.1:PORT/metrics answers 200, else 1."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ebrain.observability.entry", description=__doc__.splitlines()[0])
    p.add_argument("--gateway-credentials", type=Path, help="credentials.json: log in as the gateway user.")
    p.add_argument("--device-credentials", type=Path, help="credentials.json: claim a device from it.")
    p.add_argument("--claim-dir", type=Path, help="Shared folder of device claims (with --device-credentials).")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the ebrain arguments")
    return p


def prepare(argv: Sequence[str], env: MutableMapping[str, str]) -> list[str]:
    """Apply the options to `env` (credentials) and return the ebrain arguments to run."""
    args = _parser().parse_args(argv)
    command = list(args.command[1:] if args.command[:1] == ["--"] else args.command)
    if args.gateway_credentials:
        gateway_identity(args.gateway_credentials).apply(env)
    if args.device_credentials:
        if not args.claim_dir:
            raise SystemExit("--device-credentials needs --claim-dir")
        claim_device(args.device_credentials, args.claim_dir, socket.gethostname()).apply(env)
    return command


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["probe"]:
        raise SystemExit(probe(int(argv[1])))
    command = prepare(argv, os.environ)
    if not command:
        raise SystemExit("nothing to run: give -- and the ebrain arguments")
    from ebrain.cli import main as ebrain_main  # noqa: PLC0415

    sys.argv = ["ebrain", *command]
    ebrain_main()


if __name__ == "__main__":
    main()
