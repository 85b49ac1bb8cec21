"""The model registry: a directory with one folder per version and a manifest of them all.

    REGISTRY/registry.json            {"current": version|null, "versions": [entry, ...]}
    REGISTRY/<version>/model.gguf     the exported, quantized model (what devices download)
    REGISTRY/<version>/report.md      the round's evaluation report

An entry holds the version, its parent, sha256, size, metrics, the data manifest id it was trained on, and a
status: base, candidate, rejected, canary, promoted, rolled_back. The manifest is rewritten atomically (write a
temp file, rename); one writer per registry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainers.adapters.export import copy_atomic, sha256_file

STATUSES = frozenset({"base", "candidate", "rejected", "canary", "promoted", "rolled_back"})


class Registry:
    """Versions of one edge model, newest last."""

    def __init__(self, root: Path, model_id: str = "edge") -> None:
        self.root = root
        self.model_id = model_id
        root.mkdir(parents=True, exist_ok=True)

    @property
    def _manifest(self) -> Path:
        return self.root / "registry.json"

    def load(self) -> dict[str, Any]:
        """The manifest (an empty one before the first version)."""
        if not self._manifest.is_file():
            return {"model_id": self.model_id, "current": None, "versions": []}
        data: dict[str, Any] = json.loads(self._manifest.read_text())
        return data

    def _save(self, data: dict[str, Any]) -> None:
        tmp = self._manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self._manifest)

    def entry(self, version: str) -> dict[str, Any]:
        """One version's entry. Raises KeyError for an unknown version."""
        for item in self.load()["versions"]:
            if item["version"] == version:
                return dict(item)
        raise KeyError(version)

    def current(self) -> dict[str, Any] | None:
        """The version devices should run (the last promoted one), or None."""
        data = self.load()
        return self.entry(data["current"]) if data["current"] else None

    def model_path(self, version: str) -> Path:
        return self.root / version / "model.gguf"

    def next_version(self) -> str:
        return f"v{len(self.load()['versions'])}"

    def register(self, model: Path, *, parent: str | None, status: str, metrics: dict[str, Any] | None = None,
                 data_manifest_id: str | None = None, extra: dict[str, Any] | None = None,
                 report: str | None = None) -> dict[str, Any]:
        """Copy `model` in as the next version and record it; status 'base' also makes it current."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        version = self.next_version()
        folder = self.root / version
        folder.mkdir(parents=True, exist_ok=True)
        path = copy_atomic(model, folder / "model.gguf")
        if report is not None:
            (folder / "report.md").write_text(report)
        entry = {"version": version, "parent": parent, "status": status, "sha256": sha256_file(path),
                 "size_bytes": path.stat().st_size, "metrics": metrics or {}, "data_manifest_id": data_manifest_id,
                 "created": datetime.now(UTC).isoformat(timespec="seconds"), **(extra or {})}
        data = self.load()
        data["versions"].append(entry)
        if status == "base":
            data["current"] = version
        self._save(data)
        return entry

    def set_status(self, version: str, status: str, **notes: Any) -> dict[str, Any]:
        """Record a rollout step; 'promoted' makes the version current, 'rolled_back' restores its parent."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        data = self.load()
        for item in data["versions"]:
            if item["version"] == version:
                item["status"] = status
                item.setdefault("history", []).append(
                    {"status": status, "at": datetime.now(UTC).isoformat(timespec="seconds"), **notes})
                if status == "promoted":
                    data["current"] = version
                elif status == "rolled_back" and data["current"] == version:
                    data["current"] = item["parent"]
                self._save(data)
                return dict(item)
        raise KeyError(version)
