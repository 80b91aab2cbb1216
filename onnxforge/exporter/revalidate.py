"""`onnxforge validate DIR`: re-check an exported folder against its torch source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxforge.errors import BadInput
from onnxforge.exporter.validate import check_parity
from onnxforge.folder import read_manifest, write_manifest
from onnxforge.models import load_source
from onnxforge.progress import Steps


def revalidate(folder: Path, against: str | None, tolerance: float) -> dict[str, Any]:
    """Check parity of `folder` against `against` (default: its recorded source); record the result."""
    if not folder.is_dir():
        raise BadInput(f"'{folder}' is not a folder: give a folder written by onnxforge export")
    manifest = read_manifest(folder)
    source = against or manifest.get("source", {}).get("name")
    if not source:
        raise BadInput(f"'{folder}' records no source: pass --against SOURCE")
    steps = Steps()
    with steps.step("load", f"load {source}"):
        loaded = load_source(source)
    with steps.step("validate", "check parity with torch (logits and greedy tokens)"):
        parity = check_parity(folder, loaded, tolerance)
    parity["against"] = source
    if manifest:
        write_manifest(folder, manifest | {"parity": parity})
    return parity
