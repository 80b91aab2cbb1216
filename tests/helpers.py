"""Small bad-input makers shared by the tests: fake model folders and GGUF files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def fake_model_folder(root: Path, model_type: str, weights_file: str) -> Path:
    """A folder with a config.json of `model_type` and an empty `weights_file`."""
    folder = root / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / weights_file).write_bytes(b"")
    return folder


def write_gguf(path: Path, architecture: str) -> Path:
    """A valid GGUF file declaring `architecture`, with one small tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
