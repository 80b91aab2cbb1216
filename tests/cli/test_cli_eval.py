"""`onnxforge eval`: JSON on stdout, and one error line with exit 2 for bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from onnxforge import data
from onnxforge.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def test_json_reports_the_metrics_and_the_settings(
    export_tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(["eval", str(export_tiny("llama")), "--task", "arc_easy", "--limit", "5", "--json"], capsys)
    report = json.loads(out)
    assert status == 0 and report["task"] == "arc_easy" and report["n"] == 5
    assert 0 <= report["acc"] <= 1 and 0 <= report["acc_norm"] <= 1 and report["settings"]["shots"] == 0


def _not_ours(folder: Path, tmp_path: Path) -> list[str]:
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    (copy / "onnxforge.json").unlink()
    return [str(copy), "--task", "wikitext2"]


BAD = {
    "unknown task": (lambda folder, tmp: [str(folder), "--task", "mmlu"], "unknown task 'mmlu'"),
    "limit 0": (lambda folder, tmp: [str(folder), "--task", "lambada", "--limit", "0"], "--limit must be >= 1"),
    "not our folder": (_not_ours, "not an onnxforge model folder"),
    "missing folder": (lambda folder, tmp: [str(tmp / "nothing"), "--task", "arc_easy"], "not an onnxforge model folder"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(case: str, export_tiny: Callable[[str], Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    make_args, expected = BAD[case]
    status, out, err = _run(["eval", *make_args(export_tiny("llama"), tmp_path)], capsys)
    assert status == 2 and out == "" and len(err) == 1 and expected in err[0]


def test_a_missing_data_file_is_one_line_and_exit_2(
    export_tiny: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    status, _, err = _run(["eval", str(export_tiny("llama")), "--task", "lambada"], capsys)
    assert status == 2 and len(err) == 1 and "lambada_openai/test.jsonl is missing" in err[0]
