"""`onnxforge distill` on a tiny BERT whose layer was dropped: it trains towards the teacher's embeddings and exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from onnxforge.cli import main
from onnxforge.exporter.export import export_model
from onnxforge.folder import read_tokenizer
from onnxforge.runtime.embed import unit_vectors
from onnxforge.train.data import training_text
from onnxforge.train.encoder import encoder_rows

from ..passes.helpers import run_recipe
from .conftest import STUDENT_RECIPES

TRAINING = ["--tokens", "4096", "--sequence-length", "32", "--learning-rate", "1e-3", "--blockwise-share", "0.25"]


@pytest.fixture(scope="module")
def bert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("encoder-distill")
    export_model("tiny:bert", root / "teacher")
    run_recipe(root / "teacher", root / "student", STUDENT_RECIPES["drop-layers"])
    return root / "teacher", root / "student"


def _mean_cosine(reference: Path, folder: Path) -> float:
    """Mean cosine of the two folders' sentence embeddings on rows like the training rows (32 tokens, all attended)."""
    rows = encoder_rows(read_tokenizer(folder), training_text().passages[-40:], 32)[:16]
    vectors = []
    for path in (reference, folder):
        session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
        feeds = {"input_ids": rows, "attention_mask": np.ones_like(rows), "token_type_ids": np.zeros_like(rows)}
        feeds = {value.name: feeds[value.name] for value in session.get_inputs()}
        vectors.append(unit_vectors(session.run(["sentence_embedding"], feeds)[0]))
    return float((vectors[0] * vectors[1]).sum(axis=1).mean())


def test_a_layer_dropped_encoder_distils_towards_its_teacher(bert_pair: tuple[Path, Path], tmp_path: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    teacher, student = bert_pair
    out = tmp_path / "distilled"
    assert main(["distill", "tiny:bert", str(student), str(out), *TRAINING]) == 0, capfd.readouterr().err
    manifest = json.loads((out / "onnxforge.json").read_text())
    record = manifest["passes"][-1]
    assert [p["pass"] for p in manifest["passes"]] == ["drop-layers", "distill"]
    assert manifest["parity"]["passed"] and manifest["parity"]["min_embedding_cosine"] >= 0.9999
    assert manifest["architecture"]["task"] == "feature-extraction" and manifest["architecture"]["num_layers"] == 1
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    losses = [r["embedding"] for r in record["curve"] if r["stage"] == "kd"]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert _mean_cosine(teacher, out) > _mean_cosine(teacher, student)


def test_encoder_rows_sit_between_the_tokenizers_special_tokens(bert_pair: tuple[Path, Path]) -> None:
    tokenizer = read_tokenizer(bert_pair[1])
    rows = encoder_rows(tokenizer, training_text().passages[:20], 16)
    opening, closing = tokenizer.encode("").ids
    assert rows.shape[1] == 16 and (rows[:, 0] == opening).all() and (rows[:, -1] == closing).all()
    assert not np.isin(rows[:, 1:-1], [opening, closing]).any()


@pytest.mark.parametrize(("teacher", "extra", "message"), [
    ("tiny:llama", [], "not derived from the teacher"),
    ("tiny:bert", ["--quantize", "int4"], "--quantize trains causal LMs"),
])
def test_a_wrong_teacher_or_quantize_is_one_line(bert_pair: tuple[Path, Path], tmp_path: Path,
                                                 capfd: pytest.CaptureFixture[str], teacher: str, extra: list[str],
                                                 message: str) -> None:
    capfd.readouterr()
    status = main(["distill", teacher, str(bert_pair[1]), str(tmp_path / "o"), *extra])
    err = capfd.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_a_tokenizer_file_that_pads_and_truncates_is_read_without_either(tmp_path: Path) -> None:
    from onnxforge.models.encoders import tiny_wordpiece_tokenizer

    backend = tiny_wordpiece_tokenizer().backend_tokenizer
    backend.enable_padding(length=128)
    backend.enable_truncation(max_length=8)
    backend.save(str(tmp_path / "tokenizer.json"))
    assert len(read_tokenizer(tmp_path).encode("the river " * 10).ids) == 22  # [CLS], 20 words, [SEP]
