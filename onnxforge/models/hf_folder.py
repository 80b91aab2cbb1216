"""Write a Hugging Face safetensors folder of a source (the anchors' exporters need one), or print its GGUF.

    python -m onnxforge.models.hf_folder smollm2-135m OUT      # config.json + model.safetensors + tokenizer
    python -m onnxforge.models.hf_folder --gguf smollm2-135m   # the path of the named default's GGUF file

The named default is a dequantised GGUF: its config carries a `quantization_config` that would
make transformers refuse to save it, and optimum's transformers 4.57 to read it; it is dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from onnxforge.models import load_source
from onnxforge.models.sources import named_gguf_path


def write_hf_folder(source: str, out: Path) -> None:
    """Save the source's float weights, config and tokenizer as a plain transformers folder."""
    loaded = load_source(source)
    loaded.model.config.quantization_config = None
    loaded.model.hf_quantizer = None
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(config, indent=2))


if __name__ == "__main__":
    if sys.argv[1] == "--gguf":
        print(named_gguf_path(sys.argv[2]))
    else:
        write_hf_folder(sys.argv[1], Path(sys.argv[2]))
