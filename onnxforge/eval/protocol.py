"""The timing protocol every engine follows in its own process (standard library only).

An engine is `make_engine(model, threads)` returning an object with
`token_times(rows, new_tokens) -> list[float]`: the seconds, from the call, at which each
decode step's tokens became available (greedy, exactly `new_tokens` steps, every row of `rows`
generated together). From those: time to first token, decode tokens/s, prefill tokens/s (a long
prompt, one step). The engine's module runs `main(make_engine)`; it prints one JSON object.
Anchor engines run in their own virtual environments, so this file imports nothing from onnxforge.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol


class Engine(Protocol):
    """What an engine module builds."""

    def token_times(self, rows: list[list[int]], new_tokens: int) -> list[float]:
        """Seconds after the call at which each step's tokens were ready."""


def summarize(values: list[float]) -> dict[str, float]:
    """min / median / max of repeated figures."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def measure(engine: Engine, rows: list[list[int]], long_prompt: list[int], new_tokens: int,
            repeats: int) -> dict[str, Any]:
    """Warm-up, then `repeats` runs of decoding and of prefilling the long prompt."""
    engine.token_times(rows, new_tokens)
    ttft, decode, prefill = [], [], []
    for _ in range(repeats):
        times = engine.token_times(rows, new_tokens)
        ttft.append(times[0])
        decode.append(len(rows) * (len(times) - 1) / (times[-1] - times[0]))
        prefill.append(len(long_prompt) / engine.token_times([long_prompt], 1)[0])
    return {"ttft_s": summarize(ttft), "decode_tokens_per_s": summarize(decode),
            "prefill_tokens_per_s": summarize(prefill)}


def streamed_times(generate: Callable[[object], None]) -> list[float]:
    """Token times seen by a transformers-style streamer passed to `generate` (the prompt's put() dropped)."""
    start, times = time.perf_counter(), []

    class Clock:
        def put(self, value: object) -> None:
            times.append(time.perf_counter() - start)

        def end(self) -> None:
            pass

    generate(Clock())
    return times[1:]


def main(make_engine: Callable[[str, int], Engine]) -> None:
    """Command line of an engine process: --model, --rows (JSON), --long-prompt (JSON), ..."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--rows", required=True, help="JSON list of prompts as token ids")
    parser.add_argument("--long-prompt", required=True, help="JSON token ids for the prefill figure")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    engine = make_engine(args.model, args.threads)
    load_s = time.perf_counter() - start
    figures = measure(engine, json.loads(args.rows), json.loads(args.long_prompt), args.new_tokens, args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    json.dump({"load_s": load_s, "peak_rss_bytes": peak, **figures}, sys.stdout)
