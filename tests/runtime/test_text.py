"""Tokenizer and chat template of an exported folder, read without transformers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from onnxforge.errors import BadInput
from onnxforge.runtime.text import TextCodec


def test_chat_template_renders_like_transformers(export_tiny: Callable[[str], Path]) -> None:
    from onnxforge.models.tiny import tiny_tokenizer

    messages = [{"role": "user", "content": "Bonjour, ça va ?"}]
    codec = TextCodec(export_tiny("llama"))
    expected = tiny_tokenizer().apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert codec.render_chat(messages) == expected
    assert codec.decode(codec.encode(expected)) == "user\nBonjour, ça va ?\nassistant\n"


def test_stop_ids_come_from_generation_config(export_tiny: Callable[[str], Path]) -> None:
    folder = export_tiny("llama")
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert TextCodec(folder).stop_ids() == [eos] == [TextCodec(folder).tokenizer.token_to_id("<|im_end|>")]


def test_chat_templates_run_in_a_sandbox(export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    folder = export_tiny("llama")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(BadInput, match="chat template .* sandbox forbids") as refused:
        TextCodec(tmp_path).render_chat([{"role": "user", "content": "hi"}])
    assert isinstance(refused.value.__cause__, SecurityError)
