"""Where a serving step's time goes: the engine in-process (no HTTP) on a fused folder.

    .venv/bin/python benchmarks/serving_profile.py DIR [--requests 16] [--input-tokens 128]
        [--output-tokens 128] [--threads 2]

1. All requests submitted at once to one `Engine` (random prompt ids, exactly `--output-tokens`
   each), stepped until done: total seconds, output tokens/s, seconds inside `session.run`, and
   the split between prefill and decode steps.
2. The decode step alone at `--requests` rows with an empty cache and after 200 and 400 past
   tokens (median of 5 calls), which separates the weight MatMuls (the empty cache) from the
   attention over the cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.session import SessionSettings
from onnxforge.runtime.text import TextCodec
from onnxforge.serve.engine import Engine
from onnxforge.serve.requests import RequestSettings
from onnxforge.serve.slots import SlotMemory

PASTS = (0, 200, 400)


def engine_run(folder: Path, requests: int, prompt: int, output: int, threads: int) -> dict[str, float]:
    """Seconds of one burst through the engine, split by phase."""
    decoder = Decoder(folder, SessionSettings.with_threads(threads))
    engine = Engine(decoder, TextCodec(folder).decode, frozenset(), max_batch=requests,
                    context=prompt + output + 1)
    phases = {"prefill": 0.0, "decode": 0.0}
    for phase in phases:
        engine.__dict__[f"_{phase}"] = _timed(getattr(engine, f"_{phase}"), phases, phase)
    rng = np.random.default_rng(0)
    for _ in range(requests):
        engine.submit(rng.integers(100, 40_000, prompt).tolist(), RequestSettings(output, ignore_eos=True),
                      lambda event: None)
    start = time.perf_counter()
    while engine.step():
        pass
    total = time.perf_counter() - start
    return {"total_s": total, "output_tokens_per_s": requests * output / total, "session_run_s": decoder.run_seconds,
            "prefill_s": phases["prefill"], "decode_s": phases["decode"]}


def _timed(method, phases: dict[str, float], phase: str):
    def timed(*args):
        start = time.perf_counter()
        result = method(*args)
        phases[phase] += time.perf_counter() - start
        return result
    return timed


def decode_step_ms(folder: Path, rows: int, past: int, threads: int) -> float:
    """Median milliseconds of one decode call over `rows` rows that each hold `past` tokens."""
    decoder = Decoder(folder, SessionSettings.with_threads(threads))
    slots = SlotMemory(decoder.layout, rows, max(PASTS) + 2)
    ids = np.full((rows, 1), 100, np.int64)
    mask = np.ones((rows, past + 1), np.int64)
    positions = np.full((rows, 1), past, np.int64)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        decoder.step(slots.cache(0, rows), ids, mask, positions)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[2:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    run = engine_run(args.folder, args.requests, args.input_tokens, args.output_tokens, args.threads)
    print(f"{args.requests} requests of {args.input_tokens} + {args.output_tokens} tokens: {run['total_s']:.2f} s, "
          f"{run['output_tokens_per_s']:.1f} output tok/s; inside session.run {run['session_run_s']:.2f} s; "
          f"prefill steps {run['prefill_s']:.2f} s, decode steps {run['decode_s']:.2f} s "
          f"({1000 * run['decode_s'] / args.output_tokens:.1f} ms each)")
    steps = {past: decode_step_ms(args.folder, args.requests, past, args.threads) for past in PASTS}
    print(f"decode step at {args.requests} rows: " + ", ".join(f"{ms:.1f} ms after {past} past tokens"
                                                              for past, ms in steps.items()))


if __name__ == "__main__":
    main()
