"""Serving figures in one run: our server against vLLM's CPU build and llama.cpp's llama-server.

    .venv/bin/python benchmarks/serving_table.py /tmp/smol --work /tmp/serve-run --out docs/serving-run

/tmp/smol is `onnxforge export smollm2-135m /tmp/smol`; the anchors come from `make anchors`
(vLLM on the safetensors folder in float32, llama-server on the original Q4_1 GGUF). Each server
runs alone on this machine with 2 threads and gets the same loads from `bench-serve` (128 prompt
tokens, 128 output tokens, all requests at once, twice as many requests as the concurrency, at
least 8); our `--max-batch 1` baseline only at concurrency 1 and 16. Peak RSS is the server's
process tree. Writes serving.json, serving.md (the table) and serving.png under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from onnxforge.eval.bench_serve import ServeLoad, bench_serve
from onnxforge.folder import read_tokenizer
from onnxforge.passes.calibration import CalibrationSettings
from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import load_recipe

ANCHORS = Path(os.environ.get("ONNXFORGE_CACHE", Path.home() / ".cache" / "onnxforge")) / "anchors"
CONTEXT = 512  # per request: 128 in + 128 out fits with room


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def servers(work: Path, threads: int, slots: int, anchors: list[str]) -> list[tuple[str, list[str], dict, list[int]]]:
    """(name, command with {port}, extra environment, concurrency levels) of every server to measure."""
    ours = [sys.executable, "-m", "onnxforge.cli", "serve", "--port", "{port}", "--threads", str(threads),
            "--context", str(CONTEXT), "--max-queue", "256", "--model-name", "smollm2"]
    rows = [("onnxforge fp32 (fuse)", [*ours, str(work / "fuse"), "--max-batch", str(slots)], {}, LEVELS),
            ("onnxforge fp32, --max-batch 1", [*ours, str(work / "fuse"), "--max-batch", "1"], {}, [1, 16]),
            ("onnxforge int4", [*ours, str(work / "int4"), "--max-batch", str(slots)], {}, LEVELS)]
    if "vllm" in anchors:
        python = ANCHORS / "vllm" / "venv" / "bin" / "python"
        rows.append(("vLLM 0.32 CPU fp32", [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model",
                                            str(ANCHORS / "hf"), "--dtype", "float32", "--max-model-len", "2048",
                                            "--port", "{port}", "--host", "127.0.0.1"],
                     {"VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}", "VLLM_CPU_KVCACHE_SPACE": "2"}, LEVELS))
    if "llamaserver" in anchors:
        binary = ANCHORS / "llama-server" / "venv" / "bin" / "llama-cpp-server"  # sets up its libraries
        gguf = subprocess.run([sys.executable, "-m", "onnxforge.models.hf_folder", "--gguf", "smollm2-135m"],
                              capture_output=True, text=True, check=True).stdout.strip()
        rows.append(("llama-server Q4_1", [str(binary), "-m", gguf, "--port", "{port}", "--host", "127.0.0.1",
                                           "--ctx-size", str(slots * CONTEXT), "--", "-np", str(slots),
                                           "-t", str(threads), "-cb"], {}, LEVELS))
    return rows


LEVELS = [1, 4, 16, 32]


class PeakRss(threading.Thread):
    """Samples the resident memory of a process and its children every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.done = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)


def measure(name: str, command: list[str], env: dict, levels: list[int], tokenizer, log: Path) -> dict:
    """Start one server, offer every load, stop it; its reports and peak RSS."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen([part.replace("{port}", str(port)) for part in command], stdout=output,
                                   stderr=subprocess.STDOUT, env={**os.environ, **env})
    rss = PeakRss(process.pid)
    rss.start()
    try:
        started = time.monotonic()
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() - started > 900:
                raise RuntimeError(f"{name} did not start: see {log}")
            time.sleep(1)
        ready_s = time.monotonic() - started
        print(f"{name}: up after {ready_s:.0f} s", flush=True)
        reports = []
        for level in levels:
            load = ServeLoad(max(8, 2 * level), float("inf"), level, 128, 128)
            reports.append(bench_serve(url, load, tokenizer=tokenizer))
            report = reports[-1]
            print(f"  concurrency {level}: {report['output_tokens_per_s']:.1f} out tok/s, "
                  f"TTFT p50 {report['ttft_s_median']}, p99 {report['ttft_s_p99']}, failed {report['failed']}",
                  flush=True)
        return {"server": name, "ready_s": round(ready_s, 1), "peak_rss_bytes": rss.peak, "reports": reports}
    finally:
        rss.done.set()
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def table(runs: list[dict]) -> str:
    """One row per server and concurrency."""
    lines = ["| server | concurrency | out tok/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | latency p99 s | "
             "failed | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for r in run["reports"]:
            lines.append(f"| {run['server']} | {r['load']['max_concurrency']} | {r['output_tokens_per_s']:.1f} | "
                         f"{r['ttft_s_median'] * 1000:.0f} | {r['ttft_s_p99'] * 1000:.0f} | "
                         f"{r['tpot_s_median'] * 1000:.1f} | {r['e2e_s_p99']:.2f} | {r['failed']} | "
                         f"{run['peak_rss_bytes'] / 2**20:.0f} |")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: Path) -> None:
    """Output throughput and p99 TTFT against concurrency, one line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        levels = [r["load"]["max_concurrency"] for r in run["reports"]]
        left.plot(levels, [r["output_tokens_per_s"] for r in run["reports"]], marker="o", label=run["server"])
        right.plot(levels, [r["ttft_s_p99"] for r in run["reports"]], marker="o", label=run["server"])
    left.set(xlabel="concurrent requests", ylabel="output tokens / s", title="throughput (128 in / 128 out)")
    right.set(xlabel="concurrent requests", ylabel="seconds", title="p99 time to first token", yscale="log")
    for axes in (left, right):
        axes.set_xscale("log", base=2)
        axes.grid(alpha=0.3)
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="the fp32 export of the default model")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slots", type=int, default=32, help="--max-batch and llama-server's -np")
    parser.add_argument("--anchors", default="vllm,llamaserver")
    parser.add_argument("--only", help="measure only the servers whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the servers already in serving.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for recipe in ("fuse", "int4"):
        if not (args.work / recipe / "model.onnx").is_file():
            compress(args.export, args.work / recipe, load_recipe(recipe), CalibrationSettings(), force=True)
    tokenizer = read_tokenizer(args.export)
    saved = args.out / "serving.json"
    runs = json.loads(saved.read_text()) if args.keep and saved.is_file() else []
    chosen = [a for a in args.anchors.split(",") if a]
    for index, (name, command, env, levels) in enumerate(servers(args.work, args.threads, args.slots, chosen)):
        if any(run["server"] == name for run in runs) or (args.only and args.only not in name):
            continue
        try:
            runs.append(measure(name, command, env, levels, tokenizer, args.work / f"server-{index}.log"))
        except RuntimeError as error:
            print(f"{name}: skipped ({error})", flush=True)
        saved.write_text(json.dumps(runs, indent=1))
    (args.out / "serving.md").write_text(table(runs))
    plot(runs, args.out / "serving.png")
    print(table(runs))


if __name__ == "__main__":
    main()
