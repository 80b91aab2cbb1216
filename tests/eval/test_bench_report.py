"""bench: every engine in its own process, missing anchors reported as skipped; report: table and plots."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from onnxforge.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(export_tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONNXFORGE_CACHE", str(out / "no-anchors-here"))
        status = main(["bench", str(export_tiny("llama")), "--anchors", "torch,optimum", "--out", str(out),
                       "--new-tokens", "6", "--repeats", "1", "--batch", "3"])
    assert status == 0
    return out


def test_bench_times_our_runtime_and_torch_and_reports_a_missing_anchor(run_dir: Path) -> None:
    runs = json.loads((run_dir / "bench.json").read_text())["runs"]
    timed = {(run["engine"], run.get("batch")) for run in runs if "skipped" not in run}
    assert timed == {("onnxforge llama", 1), ("onnxforge llama", 3), ("torch eager fp32", 1)}
    for run in runs:
        if "skipped" not in run:
            assert run["decode_tokens_per_s"]["median"] > 0 and run["peak_rss_bytes"] > 0
            assert run["ttft_s"]["min"] <= run["ttft_s"]["median"] <= run["ttft_s"]["max"]
    ours = next(run for run in runs if run["engine"] == "onnxforge llama")
    assert ours["peak_rss_bytes"] < 400 * 2**20  # its own peak, not the size of the process that started it
    [skipped] = [run for run in runs if "skipped" in run]
    assert skipped["engine"] == "optimum" and "make anchors" in skipped["skipped"]


def test_bench_puts_each_batch_1_run_against_the_memory_bandwidth(run_dir: Path,
                                                                  export_tiny: Callable[[str], Path]) -> None:
    report = json.loads((run_dir / "bench.json").read_text())
    architecture = json.loads((export_tiny("llama") / "onnxforge.json").read_text())["architecture"]
    kv_position = 2 * 4 * architecture["num_layers"] * architecture["num_kv_heads"] * architecture["head_dim"]
    runs = {(run["engine"], run.get("batch")): run for run in report["runs"] if "skipped" not in run}
    ours = runs[("onnxforge llama", 1)]
    mean_past = report["prompt_tokens"] + 6 / 2
    assert ours["bytes_per_token"] == int(ours["model_bytes"] + kv_position * mean_past)
    achieved = ours["bytes_per_token"] * ours["decode_tokens_per_s"]["median"]
    assert ours["achieved_bytes_per_s"] == pytest.approx(achieved, abs=1)
    assert ours["bandwidth_fraction"] == pytest.approx(achieved / report["read_bandwidth_bytes_per_s"], abs=1e-3)
    assert report["read_bandwidth_bytes_per_s"] > 0
    assert "bytes_per_token" not in runs[("onnxforge llama", 3)]  # a batch shares its reads between rows
    assert "bytes_per_token" not in runs[("torch eager fp32", 1)]  # its source's size is not a folder's


def test_report_joins_eval_results_and_draws_both_plots(
    run_dir: Path, export_tiny: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(export_tiny("llama")), "--task", "wikitext2", "--limit", "2", "--out", str(run_dir)]) == 0
    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    perplexity = json.loads((run_dir / "eval.jsonl").read_text().splitlines()[0])["perplexity"]
    assert f"{perplexity:.2f}" in report and "optimum" in report and "onnxforge bench" in report
    for plot in ("size_vs_perplexity.png", "decode_tokens_per_s.png"):
        assert (run_dir / plot).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(("args", "expected"), [
    (["bench", "{folder}", "--anchors", "vllm"], "unknown anchor vllm"),
    (["bench", "{tmp}"], "not an onnxforge model folder"),
    (["report", "{tmp}"], "has no bench.json"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], expected: str, export_tiny: Callable[[str], Path],
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filled = [a.format(folder=export_tiny("llama"), tmp=tmp_path) for a in args]
    status = main(filled)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and expected in err[0]
