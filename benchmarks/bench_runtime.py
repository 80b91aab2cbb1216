"""Runtime benchmark for the README: our loop vs a plain numpy loop vs torch eager, in one run.

    .venv/bin/python benchmarks/bench_runtime.py DIR [--threads 2] [--repeats 3] [--new-tokens 64] [--out FILE]

DIR is an exported folder of the default model. Every engine runs in its own fresh process, one
after the other, with the same chat prompt, greedy, exactly N new tokens (end-of-sequence
ignored), `--threads` threads for both onnxruntime and torch, one warm-up then the median
(min-max) of `--repeats` runs. Also: batch 8 vs batch 1 throughput, peak RSS of an
`onnxforge generate` process, and whether greedy output is identical to transformers' for N
tokens on three prompts (end-of-sequence honoured).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from onnxforge.eval.bench import PROMPTS
from onnxforge.runtime.generate import Generator
from onnxforge.runtime.loop import TokenLoop, greedy_continuations
from onnxforge.runtime.session import SessionSettings

console = Console(stderr=True)
Timing = dict[str, float]


def ours(generator: Generator, rows: list[list[int]], new_tokens: int) -> Timing:
    """onnxforge's token loop (IO binding, KV cache kept in onnxruntime values)."""
    loop = TokenLoop(generator.decoder, rows, new_tokens)
    for _ in loop:
        pass
    stats = loop.stats
    return {"ttft_s": stats.prefill_s, "decode_tokens_per_s": stats.decode_tokens_per_s,
            "overhead_ms_per_token": stats.overhead_s_per_step * 1000 / len(rows)}


def plain_loop(session: ort.InferenceSession, prompt: list[int], new_tokens: int) -> Timing:
    """The textbook loop: session.run with numpy arrays, present fed back as past, argmax."""
    past_inputs = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
    names, (_, heads, _, head_dim) = [i.name for i in past_inputs], past_inputs[0].shape
    past = {name: np.zeros((1, heads, 0, head_dim), np.float32) for name in names}
    ids = np.array([prompt], dtype=np.int64)
    positions = np.arange(len(prompt), dtype=np.int64)[None]
    start = time.perf_counter()
    for step in range(new_tokens):
        if step == 1:
            first, decode_start = time.perf_counter() - start, time.perf_counter()
        length = positions[0, -1] + 1
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, length), np.int64), "position_ids": positions, **past}
        logits, *present = session.run(None, feeds)
        past = dict(zip(names, present))
        ids = logits[:, -1].argmax(-1)[:, None].astype(np.int64)
        positions = positions[:, -1:] + 1
    return {"ttft_s": first, "decode_tokens_per_s": (new_tokens - 1) / (time.perf_counter() - decode_start)}


def torch_eager(model: object, prompt: list[int], new_tokens: int) -> Timing:
    """transformers' generate on the torch model, timed with a streamer at the first token."""
    import torch

    marks: list[float] = []

    class Clock:
        def put(self, value: object) -> None:
            marks.append(time.perf_counter())

        def end(self) -> None:
            marks.append(time.perf_counter())

    start = time.perf_counter()
    with torch.no_grad():
        model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.int64),
                       do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens, streamer=Clock())
    first = marks[1] - start  # marks[0] is the prompt itself
    return {"ttft_s": first, "decode_tokens_per_s": (new_tokens - 1) / (marks[-1] - marks[1])}


def repeat(measure: Callable[[], Timing], repeats: int) -> dict[str, list[float]]:
    """One warm-up, then `repeats` runs; every figure as a list."""
    measure()
    runs = [measure() for _ in range(repeats)]
    return {key: [run[key] for run in runs] for key in runs[0]}


def peak_rss_of_generate(folder: Path, threads: int, new_tokens: int) -> int:
    """Peak RSS of an `onnxforge generate` process, in bytes.

    Started from a small Python parent: Linux keeps a forked child's pre-exec peak in ru_maxrss,
    so forking from this (large) process would report our size, not generate's.
    """
    command = [str(Path(sys.executable).with_name("onnxforge")), "generate", str(folder), PROMPTS[0],
               "--threads", str(threads), "--max-new-tokens", str(new_tokens)]
    parent = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", parent, *command], capture_output=True, text=True, check=True)
    return int(result.stdout) * 1024


def greedy_matches_torch(generator: Generator, model: object, rows: list[list[int]], new_tokens: int) -> list[bool]:
    """Our greedy ids equal transformers' for each prompt (stop ids honoured on both sides)."""
    from onnxforge.exporter.validate import torch_greedy

    stop = sorted(generator.stop_ids)
    mine = greedy_continuations(generator.decoder, rows, new_tokens, generator.stop_ids)
    return [ids == torch_greedy(model, row, new_tokens, stop) for ids, row in zip(mine, rows)]


ENGINES = ("onnxforge batch 1", "onnxforge batch 8", "plain numpy loop", "torch eager", "greedy parity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        print(json.dumps(measure_engine(args.engine, args.dir, args.threads, args.repeats, args.new_tokens)))
        return
    results = run(args)
    show(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def run(args: argparse.Namespace) -> dict[str, object]:
    """Each engine in its own fresh process, one after the other, so that none disturbs another."""
    figures = {}
    for engine in ENGINES:
        with console.status(f"measuring {engine}"):
            command = [sys.executable, __file__, str(args.dir), "--engine", engine, "--threads", str(args.threads),
                       "--repeats", str(args.repeats), "--new-tokens", str(args.new_tokens)]
            figures[engine] = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    files = [args.dir / "model.onnx", args.dir / "model.onnx_data"]
    return {
        "threads": args.threads, "repeats": args.repeats, "new_tokens": args.new_tokens,
        "engines": {name: figures[name] for name in ENGINES[:-1]},
        "greedy_identical_to_torch": figures["greedy parity"]["identical"],
        "peak_rss_bytes": peak_rss_of_generate(args.dir, args.threads, args.new_tokens),
        "model_bytes": sum(f.stat().st_size for f in files if f.is_file()),
        "versions": {"onnxruntime": ort.__version__, **figures["torch eager"].pop("versions")},
    }


def measure_engine(engine: str, folder: Path, threads: int, repeats: int, new_tokens: int) -> dict[str, object]:
    """The figures of one engine, measured in this process."""
    if engine == "plain numpy loop":
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        prompt = Generator(folder, SessionSettings.with_threads(threads)).prompt_ids(PROMPTS[0])
        return repeat(lambda: plain_loop(session, prompt, new_tokens), repeats)
    generator = Generator(folder, SessionSettings.with_threads(threads))
    rows = [generator.prompt_ids(prompt) for prompt in PROMPTS]
    if engine.startswith("onnxforge"):
        batch = rows if engine.endswith("8") else rows[:1]
        return repeat(lambda: ours(generator, batch, new_tokens), repeats)
    import torch

    from onnxforge.models import load_source

    torch.set_num_threads(threads)
    model = load_source("smollm2-135m").model
    if engine == "greedy parity":
        same = greedy_matches_torch(generator, model, rows[:3], new_tokens)
        return {"identical": f"{sum(same)}/{len(same)}"}
    return {**repeat(lambda: torch_eager(model, rows[0], new_tokens), repeats), "versions": {"torch": torch.__version__}}


def show(results: dict[str, object]) -> None:
    """The table printed on stderr and as Markdown on stdout (for the README)."""
    engines = results["engines"]
    base = statistics.median(engines["torch eager"]["decode_tokens_per_s"])
    single = statistics.median(engines["onnxforge batch 1"]["decode_tokens_per_s"])
    table = Table(title=f"decode, {results['new_tokens']} new tokens, {results['threads']} threads")
    for column in ("engine", "decode tok/s median (min-max)", "vs torch eager", "TTFT ms", "overhead ms/token"):
        table.add_column(column)
    for name, figures in engines.items():
        rate = figures["decode_tokens_per_s"]
        overhead = figures.get("overhead_ms_per_token")
        table.add_row(name, f"{statistics.median(rate):.1f} ({min(rate):.1f}-{max(rate):.1f})",
                      f"{statistics.median(rate) / base:.2f}x", f"{statistics.median(figures['ttft_s']) * 1000:.0f}",
                      f"{statistics.median(overhead):.2f}" if overhead else "-")
    console.print(table)
    batch8 = statistics.median(engines["onnxforge batch 8"]["decode_tokens_per_s"])
    console.print(f"batch 8 / batch 1 throughput: {batch8 / single:.2f}x; peak RSS of generate "
                  f"{results['peak_rss_bytes'] / 2**20:.0f} MiB for {results['model_bytes'] / 2**20:.0f} MiB on disk; "
                  f"greedy identical to torch: {results['greedy_identical_to_torch']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
