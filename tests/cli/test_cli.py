"""The command line: bad input gives one line on stderr and exit 2, and writes nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from onnxforge.cli import main
from onnxforge.folder import read_manifest

from ..helpers import fake_model_folder, write_gguf


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(args)
    return status, capsys.readouterr().err.strip().splitlines()


def _existing_output(folder: Path) -> str:
    (folder / "out").mkdir()
    return "tiny:llama"


def _unreadable_gguf(folder: Path) -> str:
    (folder / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    return str(folder / "cut.gguf")


BAD_SOURCES: dict[str, tuple[Callable[[Path], str], str]] = {
    "missing source": (lambda folder: str(folder / "nothing-here"), "not found"),
    "unreadable gguf": (_unreadable_gguf, "cannot read"),
    "gguf not a causal LM": (lambda folder: str(write_gguf(folder / "enc.gguf", "bert")), "not a causal LM"),
    "unsupported architecture": (
        lambda folder: str(fake_model_folder(folder, "t5", "model.safetensors")),
        "supported architectures: gemma2, gemma3_text, gpt2, granite, llama, mistral, olmo2, phi3, qwen2, qwen3, smollm3",
    ),
    "pickle-only checkpoint": (lambda folder: str(fake_model_folder(folder, "llama", "pytorch_model.bin")), "safetensors"),
    "existing output folder": (_existing_output, "--force"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_bad_export_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_source, expected = BAD_SOURCES[case]
    source = make_source(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    status, lines = _run(["export", source, str(tmp_path / "out")], capsys)
    assert status == 2
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unwritable_output_path_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    status, lines = _run(["export", "tiny:llama", str(tmp_path / "file" / "out")], capsys)
    assert status == 2 and len(lines) == 1 and "not a writable folder" in lines[0]


@pytest.mark.parametrize("opset", ["17", "24"])
def test_an_unsupported_opset_is_one_line_and_exit_2(
    opset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = _run(["export", "tiny:llama", str(tmp_path / "out"), "--opset", opset], capsys)
    assert status == 2 and len(lines) == 1 and "choose 18 to 23" in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_console_script_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "onnxforge.cli", "export", str(tmp_path / "missing.gguf"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_validate_rechecks_a_folder_and_records_the_result(
    export_tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = export_tiny("qwen2")
    status = main(["validate", str(folder), "--against", "tiny:qwen2"])
    assert status == 0
    assert "passed" in capsys.readouterr().out
    assert read_manifest(folder)["parity"]["against"] == "tiny:qwen2"


def test_validate_against_another_model_fails_with_exit_1(
    export_tiny: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = shutil.copytree(export_tiny("qwen2"), tmp_path / "copy")
    status = main(["validate", str(folder), "--against", "tiny:llama"])
    assert status == 1
    assert "FAILED" in capsys.readouterr().out


def test_validate_a_missing_folder_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, lines = _run(["validate", str(tmp_path / "none")], capsys)
    assert status == 2 and len(lines) == 1 and "not a folder" in lines[0]
