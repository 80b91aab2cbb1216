"""The Hugging Face files beside model.onnx: config, generation config, tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onnxforge.models import LoadedModel

_CHAT_TEMPLATE_FILE = "chat_template.jinja"


def write_hf_files(folder: Path, loaded: LoadedModel) -> None:
    """config.json, generation_config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json."""
    config = loaded.model.config
    config.use_cache = True
    config.save_pretrained(folder)
    generation = loaded.model.generation_config
    if generation.eos_token_id is None:
        generation.eos_token_id = loaded.tokenizer.eos_token_id
    generation.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    _make_tokenizer_config_portable(folder)
    _write_special_tokens_map(folder, loaded.tokenizer)


def _make_tokenizer_config_portable(folder: Path) -> None:
    """Let older readers load the tokenizer too (optimum with transformers 4.x, transformers.js).

    transformers 5 names its tokenizer class `TokenizersBackend`, which 4.x does not know, and
    keeps the chat template in a separate file; `PreTrainedTokenizerFast` loads in both (told
    not to return token_type_ids, which the graph does not take), and the template is copied
    into tokenizer_config.json where the older readers look for it.
    """
    config_file = folder / "tokenizer_config.json"
    config = _read_json(config_file)
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.setdefault("model_input_names", ["input_ids", "attention_mask"])
    template_file = folder / _CHAT_TEMPLATE_FILE
    if template_file.is_file() and "chat_template" not in config:
        config["chat_template"] = template_file.read_text(encoding="utf-8")
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_special_tokens_map(folder: Path, tokenizer: Any) -> None:
    path = folder / "special_tokens_map.json"
    if not path.is_file():
        tokens = {name: str(token) for name, token in tokenizer.special_tokens_map.items() if token}
        path.write_text(json.dumps(tokens, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
