"""The `genai` target: our folder plus the genai_config.json onnxruntime-genai's runtime reads.

onnxruntime-genai (C++, with C#, Java, Objective-C and Python bindings) runs a decoder from a
folder holding the graph, the tokenizer files and `genai_config.json`: the graph's file name and
I/O names, the head counts and sizes, the special token ids and the search defaults. A graph whose
attention is GroupQueryAttention reads and writes one cache buffer (`past_present_share_buffer`),
as our runtime does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxforge.bundle.layouts import write_server
from onnxforge.errors import BadInput
from onnxforge.folder import (
    ATTENTION_MASK,
    CONFIG_FILE,
    INPUT_IDS,
    KV_CACHE_KEY,
    LOGITS,
    MODEL_FILE,
    PAST_PREFIX,
    POSITION_IDS,
    PRESENT_PREFIX,
    SHARED_BUFFER,
    read_manifest,
)

GENAI_CONFIG_FILE = "genai_config.json"


def write_genai(folder: Path, stage: Path, runtime: tuple[int, int] | None) -> list[tuple[str, Path]]:
    """The folder's files (the graph rewritten for `runtime` if given) and its genai_config.json."""
    graphs = write_server(folder, stage, runtime)
    (stage / GENAI_CONFIG_FILE).write_text(json.dumps(genai_config(folder), indent=2) + "\n", encoding="utf-8")
    return graphs


def genai_config(folder: Path) -> dict[str, Any]:
    """genai_config.json for the folder's graph."""
    facts = read_manifest(folder).get("architecture") or {}
    if not facts:
        raise BadInput(f"'{folder}/onnxforge.json' has no architecture record: re-export the folder")
    model = ir.load(folder / MODEL_FILE)
    names = {value.name for value in model.graph.inputs}
    generation = _generation_config(folder)
    inputs = {key: key for key in (INPUT_IDS, ATTENTION_MASK, POSITION_IDS) if key in names}
    decoder = {
        "session_options": {"log_id": "onnxforge", "provider_options": []},
        "filename": MODEL_FILE,
        "head_size": facts["head_dim"],
        "hidden_size": facts["hidden_size"],
        "inputs": inputs | {"past_key_names": f"{PAST_PREFIX}%d.key", "past_value_names": f"{PAST_PREFIX}%d.value"},
        "outputs": {"logits": LOGITS, "present_key_names": f"{PRESENT_PREFIX}%d.key",
                    "present_value_names": f"{PRESENT_PREFIX}%d.value"},
        "num_attention_heads": facts["num_heads"],
        "num_hidden_layers": facts["num_layers"],
        "num_key_value_heads": facts["num_kv_heads"],
    }
    context = int(facts["max_positions"])
    eos = generation.get("eos_token_id")
    return {
        "model": {
            "bos_token_id": generation.get("bos_token_id"),
            "context_length": context,
            "decoder": decoder,
            "eos_token_id": eos,
            "pad_token_id": generation.get("pad_token_id", eos[0] if isinstance(eos, list) else eos),
            "type": facts["model_type"],
            "vocab_size": facts["vocab_size"],
        },
        "search": {
            "do_sample": False, "max_length": context, "min_length": 0, "num_beams": 1, "num_return_sequences": 1,
            "past_present_share_buffer": model.metadata_props.get(KV_CACHE_KEY) == SHARED_BUFFER,
            "repetition_penalty": 1.0, "temperature": 1.0, "top_k": 1, "top_p": 1.0,
        },
    }


def _generation_config(folder: Path) -> dict[str, Any]:
    """The special token ids: generation_config.json over config.json; BadInput when no eos_token_id is found."""
    found: dict[str, Any] = {}
    for name in (CONFIG_FILE, "generation_config.json"):
        path = folder / name
        if path.is_file():
            found |= {key: value for key, value in json.loads(path.read_text(encoding="utf-8")).items()
                      if key.endswith("_token_id") and value is not None}
    if "eos_token_id" not in found:
        raise BadInput(f"'{folder}' names no eos_token_id (config.json, generation_config.json): onnxruntime-genai "
                       "needs it to stop; re-export the folder")
    return found
