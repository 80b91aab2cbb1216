"""A serving benchmark in the style of vLLM's benchmark_serving.py, against any OpenAI-compatible server.

Requests arrive as a Poisson process at `rate` per second (or all at once), at most
`max_concurrency` in flight; each streams a completion of a prompt cut from the shipped
calibration passages to `input_tokens` tokens (with the folder's tokenizer when one is given,
else by words), asking for exactly `output_tokens` tokens (`ignore_eos`, `min_tokens`: vLLM's
and our extensions; llama-server reads `n_predict`/`ignore_eos` too). Per request: time to first
token, time per output token after it, the gaps between streamed chunks, end-to-end latency;
overall: request and output-token throughput.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from onnxforge.data import read_jsonl
from onnxforge.errors import BadInput


@dataclass(frozen=True)
class ServeLoad:
    """The load to offer: how many requests, how fast, how many at once, how long in and out."""

    requests: int = 64
    rate: float = math.inf
    max_concurrency: int = 16
    input_tokens: int = 128
    output_tokens: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("requests", "max_concurrency", "input_tokens", "output_tokens"):
            if getattr(self, name) < 1:
                raise BadInput(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.rate > 0:
            raise BadInput(f"--rate must be > 0 (or inf), got {self.rate}")


@dataclass
class RequestTiming:
    """One request's figures (seconds); `error` is set when it failed."""

    ttft: float = 0.0
    e2e: float = 0.0
    gaps: list[float] = field(default_factory=list)
    output_tokens: int = 0
    error: str = ""


def benchmark_prompts(load: ServeLoad, tokenizer: Any | None = None) -> list[str]:
    """One prompt per request from the shipped calibration passages, each about `input_tokens` long."""
    passages = [row["text"] for row in read_jsonl("calibration")]
    shuffled = random.Random(load.seed).sample(passages, len(passages))
    text = " ".join(shuffled)
    prompts = []
    for index in range(load.requests):
        start = (index * 997) % max(1, len(text) - 1)
        window = (text[start:] + " " + text)[: 16 * load.input_tokens]
        if tokenizer is not None:
            ids = tokenizer.encode(window, add_special_tokens=False).ids[: load.input_tokens]
            prompts.append(tokenizer.decode(ids))
        else:
            prompts.append(" ".join(window.split()[: max(1, round(load.input_tokens * 0.75))]))
    return prompts


async def _one(client: httpx.AsyncClient, url: str, model: str, prompt: str, load: ServeLoad) -> RequestTiming:
    body = {"model": model, "prompt": prompt, "max_tokens": load.output_tokens, "min_tokens": load.output_tokens,
            "ignore_eos": True, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    timing, start, last = RequestTiming(), time.perf_counter(), None
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                timing.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return timing
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                now = time.perf_counter()
                if chunk.get("usage"):
                    timing.output_tokens = chunk["usage"].get("completion_tokens", timing.output_tokens)
                if any(choice.get("text") for choice in chunk.get("choices", [])):
                    if last is None:
                        timing.ttft = now - start
                    else:
                        timing.gaps.append(now - last)
                    last = now
    except httpx.HTTPError as error:
        timing.error = f"{type(error).__name__}: {error}"
    timing.e2e = time.perf_counter() - start
    timing.output_tokens = timing.output_tokens or len(timing.gaps) + (last is not None)
    return timing


async def _offer(url: str, model: str, prompts: list[str], load: ServeLoad,
                 headers: dict[str, str]) -> tuple[list[RequestTiming], float]:
    gate, rng = asyncio.Semaphore(load.max_concurrency), np.random.default_rng(load.seed)
    limits = httpx.Limits(max_connections=load.max_concurrency + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits, headers=headers) as client:

        async def gated(prompt: str) -> RequestTiming:
            async with gate:
                return await _one(client, url, model, prompt, load)

        start, tasks = time.perf_counter(), []
        for prompt in prompts:
            tasks.append(asyncio.create_task(gated(prompt)))
            if math.isfinite(load.rate):
                await asyncio.sleep(rng.exponential(1 / load.rate))
        timings = await asyncio.gather(*tasks)
        return timings, time.perf_counter() - start


def served_model(url: str, headers: dict[str, str]) -> str:
    """The first model id the server lists."""
    try:
        response = httpx.get(f"{url}/v1/models", headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()["data"][0]["id"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as error:
        raise BadInput(f"could not list the models at {url}/v1/models ({error}): is the server up? "
                       "Pass --model to skip the lookup") from None


def bench_serve(url: str, load: ServeLoad, model: str | None = None, api_key: str | None = None,
                tokenizer: Any | None = None) -> dict[str, Any]:
    """Offer `load` to the server at `url`; the report (figures in seconds and per second)."""
    url = url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    model = model or served_model(url, headers)
    timings, duration = asyncio.run(_offer(url, model, benchmark_prompts(load, tokenizer), load, headers))
    return {"url": url, "model": model, "load": asdict(load), **summarize(timings, duration)}


def summarize(timings: list[RequestTiming], duration: float) -> dict[str, Any]:
    """Medians and p99s of the latencies, throughputs, and the failures."""
    done = [t for t in timings if not t.error]
    per_token = [(t.e2e - t.ttft) / (t.output_tokens - 1) for t in done if t.output_tokens > 1]
    gaps = [gap for t in done for gap in t.gaps]
    output = sum(t.output_tokens for t in done)
    figures = {"ttft_s": [t.ttft for t in done], "tpot_s": per_token, "itl_s": gaps, "e2e_s": [t.e2e for t in done]}
    return {
        "completed": len(done), "failed": len(timings) - len(done),
        "errors": sorted({t.error for t in timings if t.error})[:5],
        "duration_s": round(duration, 3),
        "request_throughput": round(len(done) / duration, 3) if duration else 0.0,
        "output_tokens_per_s": round(output / duration, 2) if duration else 0.0,
        **{f"{name}_{stat}": round(float(np.percentile(values, q)), 4) if values else None
           for name, values in figures.items() for stat, q in (("median", 50), ("p99", 99))},
    }


def plot_sweep(reports: list[dict[str, Any]], path: Path) -> None:
    """Output throughput and p99 latencies against concurrency, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [r["load"]["max_concurrency"] for r in reports]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(levels, [r["output_tokens_per_s"] for r in reports], marker="o")
    left.set(xlabel="concurrent requests", ylabel="output tokens / s", title="throughput")
    for key, label in (("ttft_s_p99", "TTFT p99"), ("tpot_s_p99", "TPOT p99")):
        right.plot(levels, [r[key] or 0 for r in reports], marker="o", label=label)
    right.set(xlabel="concurrent requests", ylabel="seconds", title="p99 latency", yscale="log")
    right.legend()
    for axes in (left, right):
        axes.set_xscale("log", base=2)
        axes.grid(alpha=0.3)
    figure.suptitle(f"{reports[0]['model']} at {reports[0]['url']}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
