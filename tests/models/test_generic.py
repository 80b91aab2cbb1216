"""The generic export path: a decoder-only model with no row in the architecture table.

Its shape facts come from its config and parity decides; architecture-free passes work on it,
structural ones refuse it by name; code shipped with a model is never run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from onnxforge.cli import main
from onnxforge.folder import read_manifest
from onnxforge.models.architectures import ARCHITECTURES
from onnxforge.models.tiny import tiny_tokenizer

OUTSIDE_THE_TABLE = "stablelm"


@pytest.fixture(scope="module")
def stablelm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face folder of a seeded tiny StableLM (safetensors + the tiny tokenizer)."""
    assert OUTSIDE_THE_TABLE not in ARCHITECTURES
    folder = tmp_path_factory.mktemp("stablelm") / "hf"
    config = AutoConfig.for_model(OUTSIDE_THE_TABLE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=259,
                                  max_position_embeddings=256)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def stablelm_export(stablelm_folder: Path) -> Path:
    out = stablelm_folder.parent / "onnx"
    assert main(["export", str(stablelm_folder), str(out)]) == 0
    return out


def test_an_architecture_outside_the_table_exports_when_parity_passes(stablelm_export: Path) -> None:
    manifest = read_manifest(stablelm_export)
    assert manifest["architecture"]["model_type"] == OUTSIDE_THE_TABLE and manifest["parity"]["passed"]
    assert manifest["parity"]["worst_abs_logits_diff"] <= 1e-4 and manifest["parity"]["greedy_identical"] == "3/3"


def test_structural_passes_refuse_it_and_weight_quantisation_works(
    stablelm_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["compress", str(stablelm_export), str(tmp_path / "pruned"), "--recipe", "prune-ffn-25"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1 and "prune-ffn supports llama, mistral, qwen2" in errors[0]
    assert main(["compress", str(stablelm_export), str(tmp_path / "int8"), "--recipe", "int8"]) == 0
    record = read_manifest(tmp_path / "int8")["passes"][-1]
    assert record["pass"] == "quantize-weights" and record["weights_quantized"] == 2 * 5 + 1  # qkv packed by fuse


def test_a_model_that_needs_its_own_code_is_refused(stablelm_folder: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "remote"
    folder.mkdir()
    for path in stablelm_folder.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="my_own_llm", auto_map={"AutoModelForCausalLM": "modeling_mine.MyLLM"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_mine.py").write_text("raise SystemExit('remote code ran')\n")
    status = main(["export", str(folder), str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "never runs code shipped with a model" in err[0]
    assert not (tmp_path / "out").exists()
