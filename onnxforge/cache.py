"""Where onnxforge keeps what it can rebuild: demo exports, TensorRT engines, optimised graphs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$ONNXFORGE_CACHE, else ~/.cache/onnxforge."""
    return Path(os.environ.get("ONNXFORGE_CACHE", Path.home() / ".cache" / "onnxforge"))
