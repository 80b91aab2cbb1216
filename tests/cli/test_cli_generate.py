"""`onnxforge generate` and `chat`: output contracts, and one error line with exit 2 for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from onnxforge.cli import main


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def _point_external_data_to(folder: Path, location: str) -> None:
    model = onnx.load(folder / "model.onnx", load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, folder / "model.onnx")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BAD_FOLDERS: dict[str, tuple[Callable[[Path], object], str]] = {
    "no model.onnx": (lambda f: (f / "model.onnx").unlink(), "has no model.onnx"),
    "no tokenizer": (lambda f: (f / "tokenizer.json").unlink(), "has no tokenizer.json"),
    "corrupt model.onnx": (lambda f: (f / "model.onnx").write_bytes(b"not an onnx file"), "corrupt or truncated"),
    "truncated model.onnx": (lambda f: _truncate(f / "model.onnx"), "corrupt or truncated"),
    "external data missing": (lambda f: (f / "model.onnx_data").unlink(), "external data file that is missing"),
    "external data truncated": (lambda f: _truncate(f / "model.onnx_data"), "external data of"),
    "external data outside": (lambda f: _point_external_data_to(f, "../model.onnx_data"), "outside its folder"),
}
BAD_FLAGS: dict[str, tuple[list[str], str]] = {
    "unknown provider": (["--provider", "rocm"], "unknown provider rocm"),
    "negative temperature": (["--temperature", "-1"], "temperature must be >= 0"),
    "top-p above 1": (["--top-p", "1.5"], "top-p must be in (0, 1]"),
    "top-p zero": (["--top-p", "0"], "top-p must be in (0, 1]"),
    "max new tokens 0": (["--max-new-tokens", "0"], "max new tokens must be >= 1"),
    "strict missing provider": (["--provider", "cuda", "--strict-provider"], "cuda not offered"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_a_bad_folder_is_one_line_and_exit_2(case: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damage, expected = BAD_FOLDERS[case]
    if case == "external data outside":
        shutil.copy(folder / "model.onnx_data", folder.parent / "model.onnx_data")
    damage(folder)
    status, out, err = _run(["generate", str(folder), "Hello"], capsys)
    assert status == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("error:") and expected in err[0]


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags_are_one_line_and_exit_2(case: str, export_tiny: Callable[[str], Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    flags, expected = BAD_FLAGS[case]
    status, out, err = _run(["generate", str(export_tiny("llama")), "Hello", *flags], capsys)
    assert status == 2 and out == "" and len(err) == 1 and expected in err[0]


@pytest.mark.parametrize(("prompt", "expected"), [("", "the prompt is empty"), ("z" * 300, "--truncate")])
def test_empty_or_too_long_prompts_are_one_line_and_exit_2(
    prompt: str, expected: str, export_tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = _run(["generate", str(export_tiny("llama")), prompt, "--raw"], capsys)
    assert status == 2 and len(err) == 1 and expected in err[0]


def test_json_has_the_design_fields_and_nothing_else_on_stdout(
    export_tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(["generate", str(export_tiny("llama")), "Hello", "--json", "--max-new-tokens", "12"], capsys)
    report = json.loads(out)
    assert status == 0
    assert {"text", "token_ids", "prompt_tokens", "new_tokens", "ttft_s", "decode_tokens_per_s", "provider"} <= set(report)
    assert report["new_tokens"] == len(report["token_ids"]) <= 12 and report["provider"] == "CPUExecutionProvider"


def test_several_prompts_are_answered_in_one_batch_as_when_alone(
    export_tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, flags = str(export_tiny("llama")), ["--json", "--max-new-tokens", "10"]
    _, out, _ = _run(["generate", folder, "Hi", "Tell me more", *flags], capsys)
    batch = json.loads(out)
    alone = [json.loads(_run(["generate", folder, prompt, *flags], capsys)[1]) for prompt in ("Hi", "Tell me more")]
    assert batch["batch"] == 2 and [r["token_ids"] for r in batch["results"]] == [r["token_ids"] for r in alone]


def test_streaming_prints_the_text_of_a_plain_run(
    export_tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, flags = str(export_tiny("llama")), ["--max-new-tokens", "16"]
    _, streamed, _ = _run(["generate", folder, "Hello", "--stream", *flags], capsys)
    _, plain, _ = _run(["generate", folder, "Hello", *flags], capsys)
    assert streamed == plain


def test_a_missing_gpu_provider_falls_back_to_cpu_with_one_line(
    export_tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(["generate", str(export_tiny("llama")), "Hi", "--provider", "tensorrt", "--json",
                             "--max-new-tokens", "4"], capsys)
    assert status == 0 and json.loads(out)["provider"] == "CPUExecutionProvider"
    assert sum("not offered" in line for line in err) == 1


def test_chat_keeps_the_conversation_and_exits_on_end_of_input(export_tiny: Callable[[str], Path]) -> None:
    result = subprocess.run([sys.executable, "-m", "onnxforge.cli", "chat", str(export_tiny("llama")),
                             "--max-new-tokens", "8"], input="Hello\n/reset\nHi again\n/exit\n",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "conversation cleared" in result.stderr and result.stdout.count("> ") == 4
