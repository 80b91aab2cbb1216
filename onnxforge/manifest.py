"""`onnxforge.json`: what produced a model folder (source, versions, sizes, parity, timings)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST_FILE = "onnxforge.json"


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The folder's manifest, or {} when it has none."""
    path = Path(folder) / MANIFEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (a temporary file renamed over the old one)."""
    folder = Path(folder)
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        json.dump(manifest, tmp, indent=2, sort_keys=False)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, folder / MANIFEST_FILE)


def folder_bytes(folder: str | Path) -> dict[str, int]:
    """Bytes of each file in the folder, plus their total under 'total'."""
    sizes = {p.name: p.stat().st_size for p in sorted(Path(folder).iterdir()) if p.is_file()}
    sizes["total"] = sum(sizes.values())
    return sizes
