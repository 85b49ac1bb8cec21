"""Training records from the ingest dataset: exactly the files a manifest names, hashes checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def manifest(data_dir: Path, manifest_id: str | None = None) -> dict[str, Any]:
    """The named manifest, or the latest (MANIFEST.json). Raises FileNotFoundError when there is none."""
    name = f"manifests/{manifest_id}.json" if manifest_id else "MANIFEST.json"
    data: dict[str, Any] = json.loads((data_dir / name).read_text())
    return data


def load(data_dir: Path, manifest_id: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """(rows, manifest id) for a round. Raises ValueError when a file does not match its recorded hash."""
    from cloud.ingest.adapters.store import read_records  # noqa: PLC0415

    ident = manifest_id or str(manifest(data_dir)["manifest_id"])
    return read_records(data_dir, ident), ident
