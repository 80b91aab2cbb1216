"""Parity of an exported folder with its torch source, on shapes the export did not trace.

Logits checks: batch 2 with left padding, a decode step with past > 0, a long sequence, and decode
steps after long pasts (beyond every traced length; for a sliding-window model also just past
the window and at twice it, where a cache that is right for short pasts goes wrong). Then greedy
generation of N tokens on three prompts, ONNX Runtime against transformers' generate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache, GenerationConfig

from onnxforge.exporter.defaults import DEFAULT_TOLERANCE, GREEDY_TOKENS
from onnxforge.models import LoadedModel
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.loop import greedy_continuations, pad_rows
from onnxforge.runtime.text import TextCodec

PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea, there lived",
)
_LONG_SEQUENCE = 200
_DECODE_STEP = 4
_GREEDY_ACROSS_WINDOW = 64


def check_parity(
    folder: Path, loaded: LoadedModel, tolerance: float = DEFAULT_TOLERANCE, new_tokens: int = GREEDY_TOKENS
) -> dict[str, Any]:
    """Compare the folder's model.onnx with the torch model; return the figures for onnxforge.json."""
    start = time.perf_counter()
    decoder, codec = Decoder(folder), TextCodec(folder)
    prompts = [codec.encode(text) for text in PROMPTS]
    facts = loaded.facts
    diffs = _logits_differences(decoder, loaded.model, prompts, facts.max_positions, facts.sliding_window)
    stop_ids = codec.stop_ids()
    greedy = [(ids, new_tokens) for ids in prompts] + _across_the_window(prompts, facts.sliding_window)
    identical = [_greedy_matches(decoder, loaded.model, ids, count, stop_ids) for ids, count in greedy]
    tokenizer_same = all(loaded.tokenizer.encode(t, add_special_tokens=False) == p for t, p in zip(PROMPTS, prompts))
    worst = max(diffs.values())
    return {
        "tolerance": tolerance,
        "max_abs_logits_diff": diffs,
        "worst_abs_logits_diff": worst,
        "greedy_new_tokens": new_tokens,
        "greedy_identical": f"{sum(identical)}/{len(identical)}",
        "tokenizer_identical": tokenizer_same,
        "passed": worst <= tolerance and all(identical) and tokenizer_same,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _across_the_window(prompts: list[list[int]], window: int | None) -> list[tuple[list[int], int]]:
    """For a sliding-window model, a prompt just short of the window and 64 greedy tokens that cross it."""
    if not window:
        return []
    text = sum(prompts, [])
    return [([int(t) for t in np.resize(text, max(1, window - 4))], _GREEDY_ACROSS_WINDOW)]


def probe_pasts(max_positions: int, window: int | None) -> list[int]:
    """Past lengths a decode step is checked after: beyond every traced length, and across a sliding window."""
    pasts = {_LONG_SEQUENCE} | ({window + 1, 2 * window} if window else set())
    return sorted({min(past, max_positions - _DECODE_STEP) for past in pasts})


def _prefill_then_decode(
    decoder: Decoder, model: torch.nn.Module, ids: np.ndarray, step_ids: np.ndarray
) -> tuple[float, float]:
    """Worst |Δ logits| of a one-row prefill of `ids`, then of a step of `step_ids` on that past."""
    mask, positions = np.ones_like(ids), np.arange(ids.shape[1], dtype=np.int64)[None]
    onnx_logits, present = decoder.forward(ids, mask, positions, decoder.empty_past(batch=1))
    torch_logits, cache = _torch_forward(model, ids, mask, positions, DynamicCache(config=model.config))
    prefill = _max_diff(onnx_logits, torch_logits)
    step_mask = np.ones((1, ids.shape[1] + step_ids.shape[1]), np.int64)
    step_positions = ids.shape[1] + np.arange(step_ids.shape[1], dtype=np.int64)[None]
    onnx_logits, _ = decoder.forward(step_ids, step_mask, step_positions, present)
    torch_logits, _ = _torch_forward(model, step_ids, step_mask, step_positions, cache)
    return prefill, _max_diff(onnx_logits, torch_logits)


def _logits_differences(
    decoder: Decoder, model: torch.nn.Module, prompts: list[list[int]], max_positions: int, window: int | None
) -> dict[str, float]:
    ids, mask = pad_rows([prompts[0], prompts[2]])
    positions = np.clip(mask.cumsum(axis=1) - 1, 0, None)
    onnx_logits, present = decoder.forward(ids, mask, positions, decoder.empty_past(batch=2))
    torch_logits, cache = _torch_forward(model, ids, mask, positions, DynamicCache(config=model.config))
    valid = mask.astype(bool)
    diffs = {"prefill_batch2_left_padded": _max_diff(onnx_logits[valid], torch_logits[valid])}

    step_ids = np.array([prompts[1][:_DECODE_STEP]] * 2, dtype=np.int64)
    step_mask = np.concatenate([mask, np.ones_like(step_ids)], axis=1)
    step_positions = positions[:, -1:] + 1 + np.arange(_DECODE_STEP)
    onnx_logits, _ = decoder.forward(step_ids, step_mask, step_positions, present)
    torch_logits, _ = _torch_forward(model, step_ids, step_mask, step_positions, cache)
    diffs["decode_past_gt_0"] = _max_diff(onnx_logits, torch_logits)

    text, pasts = np.array(sum(prompts, []), dtype=np.int64), probe_pasts(max_positions, window)
    for past in pasts:
        prefill, decode = _prefill_then_decode(decoder, model, np.resize(text, (1, past)), step_ids[:1])
        if past == pasts[-1]:  # the longest prefill is the long-sequence check
            diffs[f"sequence_{past}"] = prefill
        diffs[f"decode_after_past_{past}"] = decode
    return diffs


def _torch_forward(
    model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray, cache: DynamicCache
) -> tuple[np.ndarray, DynamicCache]:
    with torch.no_grad():
        output = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=torch.from_numpy(np.ascontiguousarray(positions)),
            cache=cache,
            use_cache=True,
        )
    return output.logits.float().numpy(), output.past_key_values


def _greedy_matches(
    decoder: Decoder, model: torch.nn.Module, prompt: list[int], new_tokens: int, stop_ids: list[int]
) -> bool:
    [ours] = greedy_continuations(decoder, [prompt], new_tokens, frozenset(stop_ids))
    return torch_greedy(model, prompt, new_tokens, stop_ids) == ours


def torch_greedy(model: torch.nn.Module, prompt: list[int], new_tokens: int, stop_ids: list[int]) -> list[int]:
    """The new ids of transformers' greedy generate for one prompt (a final stop id included)."""
    config = GenerationConfig(
        do_sample=False, max_new_tokens=new_tokens, eos_token_id=stop_ids, pad_token_id=(stop_ids or [0])[0]
    )
    with torch.no_grad():
        output = model.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.int64),
            generation_config=config,
        )
    return output[0, len(prompt):].tolist()


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))
