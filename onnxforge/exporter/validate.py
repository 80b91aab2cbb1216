"""Parity of an exported folder with its torch source, on shapes the export did not trace.

Three logits checks (batch 2 with left padding, a decode step with past > 0, a long sequence)
and greedy generation of N tokens on three prompts, ONNX Runtime against transformers' generate.
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


def check_parity(
    folder: Path, loaded: LoadedModel, tolerance: float = DEFAULT_TOLERANCE, new_tokens: int = GREEDY_TOKENS
) -> dict[str, Any]:
    """Compare the folder's model.onnx with the torch model; return the figures for onnxforge.json."""
    start = time.perf_counter()
    decoder, codec = Decoder(folder), TextCodec(folder)
    prompts = [codec.encode(text) for text in PROMPTS]
    diffs = _logits_differences(decoder, loaded.model, prompts, loaded.facts.max_positions)
    stop_ids = codec.stop_ids()
    identical = [_greedy_matches(decoder, loaded.model, ids, new_tokens, stop_ids) for ids in prompts]
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


def _logits_differences(
    decoder: Decoder, model: torch.nn.Module, prompts: list[list[int]], max_positions: int
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

    length = min(_LONG_SEQUENCE, max_positions)
    long_ids = np.resize(np.array(sum(prompts, []), dtype=np.int64), (1, length))
    long_mask = np.ones_like(long_ids)
    long_positions = np.arange(length, dtype=np.int64)[None]
    onnx_logits, _ = decoder.forward(long_ids, long_mask, long_positions, decoder.empty_past(batch=1))
    torch_logits, _ = _torch_forward(model, long_ids, long_mask, long_positions, DynamicCache(config=model.config))
    diffs[f"sequence_{length}"] = _max_diff(onnx_logits, torch_logits)
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
