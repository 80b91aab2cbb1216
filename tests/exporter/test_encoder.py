"""Encoders export to a feature-extraction graph with an in-graph pooled embedding that matches torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxforge.cli import main
from onnxforge.exporter.encoder import pooled_numpy
from onnxforge.exporter.export import export_model
from onnxforge.folder import read_manifest
from onnxforge.models.encoders import load_encoder
from onnxforge.runtime.embed import Embedder

TEXTS = ["the river", "a film about music and the war, released in the first year", "water"]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {arch: _export(f"tiny:{arch}", root / arch) for arch in ("bert", "roberta")}


def _export(source: str, out: Path) -> Path:
    export_model(source, out)
    return out


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_the_exported_embedding_is_torch_pooled_and_batching_does_not_change_it(
        encoders: dict[str, Path], arch: str) -> None:
    folder = encoders[arch]
    manifest = read_manifest(folder)
    assert manifest["parity"]["passed"] and manifest["parity"]["min_embedding_cosine"] >= 0.9999
    assert manifest["architecture"]["task"] == "feature-extraction"
    embedder = Embedder(folder)
    batched = embedder.embed(TEXTS).vectors
    alone = np.concatenate([embedder.embed([text]).vectors for text in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    loaded = load_encoder(f"tiny:{arch}")
    tokens = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    hidden = loaded.model(**tokens).last_hidden_state.detach().numpy()
    expected = pooled_numpy(hidden, tokens["attention_mask"].numpy().astype(bool), loaded.facts)
    assert float((batched * expected).sum(-1).min()) >= 0.9999


@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_the_pooling_mode_comes_from_the_sentence_transformers_config(tmp_path: Path, pooling: str) -> None:
    loaded = load_encoder("tiny:bert")
    source = tmp_path / "st-model"
    loaded.model.save_pretrained(source)
    loaded.tokenizer.save_pretrained(source)
    (source / "1_Pooling").mkdir()
    (source / "1_Pooling" / "config.json").write_text(json.dumps({f"pooling_mode_{pooling}_token"
                                                                  if pooling == "cls" else "pooling_mode_max_tokens": True}))
    (source / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    manifest = export_model(str(source), tmp_path / "out")
    assert manifest["architecture"]["pooling"] == pooling and manifest["architecture"]["normalize"] is False
    assert manifest["parity"]["passed"]


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    capfd.readouterr()
    status = main(args)
    captured = capfd.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def test_embed_prints_vectors_as_json(encoders: dict[str, Path], capfd: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(["embed", str(encoders["bert"]), *TEXTS, "--json"], capfd)
    result = json.loads(out)
    assert status == 0 and result["dimensions"] == 64 and len(result["embeddings"]) == 3
    np.testing.assert_allclose(result["embeddings"], Embedder(encoders["bert"]).embed(TEXTS).vectors, atol=1e-6)


def test_embed_refuses_a_decoder_folder_and_generate_an_encoder_one(
        encoders: dict[str, Path], export_tiny, capfd: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    status, _, err = _run(["embed", str(export_tiny("llama")), "hello"], capfd)
    assert status == 2 and len(err) == 1 and "not an encoder folder" in err[0]
    status, _, err = _run(["generate", str(encoders["bert"]), "hello"], capfd)
    assert status == 2 and len(err) == 1 and "past_key_values" in err[0]
    status, _, err = _run(["embed", str(encoders["bert"]), " "], capfd)
    assert status == 2 and len(err) == 1 and "non-empty texts" in err[0]
