"""The folder contract: every file name, graph input/output name, metadata key and domain we write.

An exported or compressed model is a folder that other tools read without onnxforge (optimum,
transformers.js, ONNX Runtime itself), so these names follow Hugging Face optimum. Exporter,
passes, runtime and evaluation import them from here; nobody spells them out again.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from onnxforge.errors import BadInput

MODEL_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx_data"
MANIFEST_FILE = "onnxforge.json"
BUNDLE_MANIFEST_FILE = "manifest.json"  # a bundle's record of its files, operators and runtime needs
ORT_FORMAT_FILE, REQUIRED_OPERATORS_FILE = "model.ort", "required_operators.config"  # a mobile bundle's graph
WEB_GRAPH_FOLDER = "onnx"  # a web bundle's graphs, one per dtype (transformers.js's layout)
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
MODEL_FILES = (MODEL_FILE, EXTERNAL_DATA_FILE, MANIFEST_FILE)

INPUT_IDS, ATTENTION_MASK, POSITION_IDS, LOGITS = "input_ids", "attention_mask", "position_ids", "logits"
# an encoder's graph (task feature-extraction): token types when the model has them; the pooled sentence embedding
TOKEN_TYPE_IDS, LAST_HIDDEN_STATE, SENTENCE_EMBEDDING = "token_type_ids", "last_hidden_state", "sentence_embedding"
# an optional int64 input of a fused graph (a graph input with a default): 0 = logits at every position, k = at
# each row's last k tokens (its last real token when rows are right-padded); tools that do not know it get all
LOGITS_TO_KEEP = "logits_to_keep"
PAST_PREFIX, PRESENT_PREFIX = "past_key_values.", "present."
KV_KINDS = ("key", "value")
BATCH_DIM, SEQUENCE_DIM, PAST_DIM = "batch_size", "sequence_length", "past_sequence_length"
TOTAL_DIM = "past_sequence_length + sequence_length"

FACTS_KEY = "onnxforge.architecture"  # model metadata: the shape facts, while passes run
PASS_LOG_KEY = "onnxforge.pass_log"  # model metadata: what each pass did, while passes run
KV_CACHE_KEY, SHARED_BUFFER = "onnxforge.kv_cache", "shared_buffer"  # saved metadata: the cache layout
# saved metadata: the rows of one call may sit at different positions (each row's tokens from slot 0 of its
# shared-buffer row, its length read from its attention_mask), as a serving batch needs
BATCH_ROWS_KEY, INDEPENDENT_ROWS = "onnxforge.batch_rows", "independent"
MS_DOMAIN = "com.microsoft"


def past_name(layer: int, kind: str) -> str:
    """`past_key_values.{layer}.{kind}`: a graph input of the cache."""
    return f"{PAST_PREFIX}{layer}.{kind}"


def present_name(layer: int, kind: str) -> str:
    """`present.{layer}.{kind}`: a graph output of the cache."""
    return f"{PRESENT_PREFIX}{layer}.{kind}"


def past_names(num_layers: int) -> list[str]:
    """Every cache input, key then value for each layer."""
    return [past_name(i, kind) for i in range(num_layers) for kind in KV_KINDS]


def present_names(num_layers: int) -> list[str]:
    """Every cache output, in the order of `past_names`."""
    return [present_name(i, kind) for i in range(num_layers) for kind in KV_KINDS]


def io_names(num_layers: int) -> tuple[list[str], list[str]]:
    """Graph input and output names of a decoder with past, in optimum's convention."""
    return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *past_names(num_layers)], [LOGITS, *present_names(num_layers)]


def check_folder(folder: Path) -> None:
    """Refuse folders that onnxforge did not write (no onnxforge.json next to model.onnx)."""
    if not (folder / MODEL_FILE).is_file() or not (folder / MANIFEST_FILE).is_file():
        raise BadInput(f"'{folder}' is not an onnxforge model folder (needs {MODEL_FILE} and {MANIFEST_FILE}): "
                       "export one with onnxforge export")


def read_tokenizer(folder: str | Path) -> Tokenizer:
    """The folder's tokenizer.json as a `tokenizers.Tokenizer` without the padding or truncation the file may set
    (an encoder's pads to 128): each reader sets its own. BadInput when it is missing or unreadable."""
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise BadInput(f"'{folder}' has no {TOKENIZER_FILE}: export the model with onnxforge export")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # noqa: BLE001 - tokenizers raises a bare Exception for unreadable files
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise BadInput(f"{path} cannot be read ({reason}): copy it again or re-export") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The folder's onnxforge.json, or {} when it has none."""
    path = Path(folder) / MANIFEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Write onnxforge.json atomically (a temporary file renamed over the old one)."""
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
