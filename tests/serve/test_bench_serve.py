"""bench-serve against a real server: every request counted with its exact output length; bad flags refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from onnxforge.errors import EXIT_BAD_INPUT
from tests.serve.server import API_KEY, Server


def test_bench_serve_measures_every_request_and_plots_the_sweep(fused_tiny: Callable[[str], Path],
                                                                tmp_path: Path) -> None:
    folder = fused_tiny("llama")
    server = Server(folder, "--api-key", API_KEY, "--max-batch", "4", "--threads", "1")
    try:
        command = [sys.executable, "-m", "onnxforge.cli", "bench-serve", server.url, "--requests", "6",
                   "--max-concurrency", "1,4", "--input-tokens", "24", "--output-tokens", "10", "--rate", "50",
                   "--api-key", API_KEY, "--tokenizer", str(folder), "--plot", str(tmp_path / "sweep.png"), "--json"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)["reports"]
    assert [r["load"]["max_concurrency"] for r in reports] == [1, 4]
    for report in reports:
        assert (report["completed"], report["failed"]) == (6, 0)
        assert report["output_tokens_per_s"] == pytest.approx(60 / report["duration_s"], rel=0.01)
        assert 0 < report["ttft_s_median"] <= report["e2e_s_median"] and report["tpot_s_p99"] > 0
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


@pytest.mark.parametrize(("flags", "words"), [(["--rate", "0"], "--rate"), (["--max-concurrency", "4,x"], "positive"),
                                              (["--requests", "0"], "--requests")])
def test_bad_flags_are_one_line_and_exit_2(flags: list[str], words: str) -> None:
    result = subprocess.run([sys.executable, "-m", "onnxforge.cli", "bench-serve", "http://127.0.0.1:9", *flags],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_BAD_INPUT and words in result.stderr.strip().splitlines()[-1]
