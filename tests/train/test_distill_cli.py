"""`onnxforge distill` end to end on tiny models: the exported student is the trained one; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnxforge.cli import main
from onnxforge.train.checkpoint import checkpoint_folder

from ..passes.helpers import batch_logits

TINY = ["--tokens", "1024", "--sequence-length", "32", "--learning-rate", "1e-3"]


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capfd.readouterr()  # what building the student printed
    status = main(args)
    return status, capfd.readouterr().err.strip().splitlines()


def test_distill_exports_the_trained_student(tiny_student, tmp_path: Path, capfd) -> None:  # noqa: ANN001
    student, out = tiny_student("ffn+drop+lowrank"), tmp_path / "distilled"
    status, err = _run(["distill", "tiny:llama", str(student), str(out), *TINY], capfd)
    assert status == 0, err
    manifest = json.loads((out / "onnxforge.json").read_text())
    record = manifest["passes"][-1]
    assert [p["pass"] for p in manifest["passes"]] == ["prune-ffn", "drop-layers", "lowrank", "distill"]
    assert record["tokens_trained"] == 1024 and not record["stopped_early"]
    assert manifest["parity"]["worst_abs_logits_diff"] < 1e-4 and manifest["parity"]["greedy_identical"] == "3/3"
    before = json.loads((student / "onnxforge.json").read_text())["parameters"]
    assert before <= manifest["parameters"] <= before + 4 * 64  # the same shapes; trained norms no longer merge
    assert not np.allclose(batch_logits(out), batch_logits(student), atol=1e-4)  # it did train
    assert not checkpoint_folder(out).exists()
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--tokens", "0"], "--tokens must be at least 1"),
    (["--precision", "fp8"], "--precision must be one of"),
    (["--resume"], "found no checkpoint"),
])
def test_bad_settings_are_one_line(tiny_student, tmp_path: Path, capfd, args: list[str], message: str) -> None:  # noqa: ANN001
    status, err = _run(["distill", "tiny:llama", str(tiny_student("prune-ffn")), str(tmp_path / "o"), *args], capfd)
    assert status == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_a_teacher_we_cannot_load_is_one_line(tiny_student, tmp_path: Path, capfd) -> None:  # noqa: ANN001
    status, err = _run(["distill", "tiny:nope", str(tiny_student("prune-ffn")), str(tmp_path / "o")], capfd)
    assert status == 2 and len(err) == 1 and "no tiny model" in err[0]


def test_a_student_of_another_teacher_is_one_line(tiny_student, tmp_path: Path, capfd) -> None:  # noqa: ANN001
    status, err = _run(["distill", "tiny:qwen3", str(tiny_student("prune-ffn")), str(tmp_path / "o")], capfd)
    assert status == 2 and len(err) == 1 and "not derived from the teacher" in err[0]


def test_an_unwritable_out_is_one_line(tiny_student, tmp_path: Path, capfd) -> None:  # noqa: ANN001
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    status, err = _run(["distill", "tiny:llama", str(tiny_student("prune-ffn")), str(a_file / "o")], capfd)
    assert status == 2 and len(err) == 1 and "cannot write" in err[0]


def test_a_corrupt_checkpoint_is_one_line(tiny_student, tmp_path: Path, capfd) -> None:  # noqa: ANN001
    out = tmp_path / "o"
    checkpoint = checkpoint_folder(out)
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text("{}")
    (checkpoint / "student.safetensors").write_bytes(b"not a safetensors file")
    status, err = _run(["distill", "tiny:llama", str(tiny_student("prune-ffn")), str(out), *TINY, "--resume"], capfd)
    assert status == 2 and len(err) == 1 and "is corrupt" in err[0]
    assert not out.exists()
