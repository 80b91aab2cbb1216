"""Bad input found by trying the tool as a new user: one line on stderr, exit 2; our own bugs exit 1.

A SIGTERM (what a supervisor or a CI timeout sends) unwinds like Ctrl-C: nothing half-written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onnxforge.cli import main
from onnxforge.errors import EXIT_TERMINATED
from onnxforge.passes.prune.ffn import PruneFfnPass

from ..helpers import fake_model_folder


def _run(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    status = main(args)
    captured = capfd.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def test_a_prompt_that_is_not_utf8_is_one_line(folder: Path, capfd: pytest.CaptureFixture[str]) -> None:
    prompt = b"abc\xff".decode("utf-8", "surrogateescape")  # what the shell hands Python for $'abc\xff'
    status, out, err = _run(["generate", str(folder), prompt], capfd)
    assert status == 2 and out == "" and len(err) == 1 and "not valid UTF-8" in err[0]


def test_a_corrupt_tokenizer_is_one_line(folder: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"vocab": {1: 2}}}')
    status, _, err = _run(["generate", str(folder), "Hello"], capfd)
    assert status == 2 and len(err) == 1 and "tokenizer.json cannot be read" in err[0]


def test_truncated_external_data_prints_only_our_line(folder: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = folder / "model.onnx_data"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    status, _, err = _run(["generate", str(folder), "Hello"], capfd)  # capfd also sees onnxruntime's own C++ log
    assert status == 2 and len(err) == 1 and err[0].startswith("error:") and "truncated" in err[0]


def test_a_malformed_config_json_is_named_as_such(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    source = fake_model_folder(tmp_path, "llama", "model.safetensors")
    (source / "config.json").write_text('{"model_type": "llama",')
    status, _, err = _run(["export", str(source), str(tmp_path / "out")], capfd)
    assert status == 2 and len(err) == 1 and "config.json' is not valid JSON" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_chat_template_escaping_the_sandbox_is_bad_input(folder: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    config_file.write_text(json.dumps(config))
    status, _, err = _run(["generate", str(folder), "Hello"], capfd)
    assert status == 2 and len(err) == 1 and "chat template" in err[0] and "--raw" in err[0]


def test_a_bug_inside_a_pass_is_exit_1_not_the_users_fault(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken(self: PruneFfnPass, model: object) -> None:
        raise ValueError("an internal mistake")

    monkeypatch.setattr(PruneFfnPass, "call", broken)
    status, _, err = _run(["compress", str(folder), str(tmp_path / "out"), "--recipe", "prune-ffn-25"], capfd)
    assert status == 1 and err[-1].startswith("failed: ValueError: an internal mistake")  # after the progress lines
    assert not any(line.startswith("error:") or "Traceback" in line for line in err)
    assert not (tmp_path / "out").exists()


def test_sigterm_during_export_leaves_nothing_and_exits_143(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "onnxforge.cli", "export", "tiny:llama", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stage = tmp_path / f".out.partial-{process.pid}"
    deadline = time.monotonic() + 120
    while not stage.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stage.exists(), "the export never started writing"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_TERMINATED
    assert stderr.strip().splitlines()[-1].startswith("terminated:")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_next_run_clears_a_partial_folder_of_a_dead_process(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.partial-{dead.stdout.strip()}"
    (stale / "model.onnx_data").parent.mkdir()
    (stale / "model.onnx_data").write_bytes(b"half")
    live = tmp_path / f".out.partial-{os.getppid()}"  # a running process's stage is not ours to remove
    live.mkdir()
    assert main(["export", "tiny:llama", str(tmp_path / "out"), "--no-validate"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]


def test_compress_without_a_tokenizer_is_one_line(folder: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (folder / "tokenizer.json").unlink()
    status, _, err = _run(["compress", str(folder), str(tmp_path / "out"), "--recipe", "prune-ffn-25"], capfd)
    assert status == 2 and err[-1].startswith("error:") and "has no tokenizer.json" in err[-1]
    assert not (tmp_path / "out").exists()
