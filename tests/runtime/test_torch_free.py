"""The runtime generates from an exported folder without importing torch or transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

SCRIPT = """
import json, sys
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.greedy import greedy_tokens
from onnxforge.runtime.text import TextCodec
codec = TextCodec(sys.argv[1])
tokens = list(greedy_tokens(Decoder(sys.argv[1]), codec.encode("Hello"), 8))
heavy = sorted(m for m in ("torch", "transformers", "onnx_ir", "onnxscript") if m in sys.modules)
print(json.dumps({"tokens": tokens, "heavy": heavy}))
"""


def test_generation_imports_neither_torch_nor_transformers(export_tiny: Callable[[str], Path]) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(export_tiny("llama"))],
                            capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(result.stdout)
    assert report["heavy"] == [] and len(report["tokens"]) == 8
