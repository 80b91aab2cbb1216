"""Helpers for pass tests: run a recipe given as text, edit weights of a folder, compare logits."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxforge.passes.calibration import CalibrationSettings
from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import parse_recipe
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.generate import GenerationSettings, Generator
from onnxforge.runtime.session import SessionSettings

SMALL_CALIBRATION = CalibrationSettings(samples=4, max_tokens=32)
FUSE_RECIPE = '[[passes]]\nname = "cleanup"\n\n[[passes]]\nname = "fuse"'


def run_recipe(source: Path, out: Path, text: str) -> dict:
    """Compress `source` into `out` with the recipe TOML `text`; the manifest."""
    return compress(source, out, parse_recipe(text, "test recipe"), SMALL_CALIBRATION, force=True)


def edited_copy(source: Path, out: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> Path:
    """A copy of the folder whose weights went through `edit` (a dict name -> array it may change)."""
    shutil.copytree(source, out)
    model = ir.external_data.load_to_model(ir.load(source / "model.onnx"))
    arrays = {name: value.const_value.numpy().copy() for name, value in model.graph.initializers.items()}
    edit(arrays)
    for name, value in model.graph.initializers.items():
        value.const_value = ir.tensor(arrays[name], name=name)
    (out / "model.onnx_data").unlink(missing_ok=True)
    ir.save(model, out / "model.onnx", external_data="model.onnx_data")
    return out


def left_padded_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids, mask and positions of two prompts (lengths 9 and 5), the shorter one left-padded."""
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 90, size=(2, 9))
    mask = np.ones_like(ids)
    mask[1, :4] = 0
    ids[1, :4] = 0
    positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    return ids, mask, positions


def batch_logits(folder: Path, optimization: str = "all") -> np.ndarray:
    """Logits [2, 9, vocab] of `left_padded_batch` (empty past); padded positions of row 1 set to 0."""
    decoder = Decoder(folder, SessionSettings(optimization=optimization))
    ids, mask, positions = left_padded_batch()
    logits = decoder.forward(ids, mask, positions, decoder.empty_past(2))[0]
    return logits * mask[..., None]


def greedy_with_cache(folder: Path, prompt: str = "hello world", tokens: int = 8) -> list[int]:
    """Greedy tokens through the runtime's generation loop (KV cache, IO binding)."""
    settings = GenerationSettings(max_new_tokens=tokens, stop_strings=())
    run = Generator(folder).generate([prompt], settings, raw=True)
    return run.completions[0].token_ids


def greedy_without_cache(folder: Path, prompt: str = "hello world", tokens: int = 8) -> list[int]:
    """Greedy tokens by recomputing the whole sequence each step (no cache at all)."""
    generator = Generator(folder)
    ids, new = generator.prompt_ids(prompt, raw=True), []
    decoder = generator.decoder
    for _ in range(tokens):
        row = np.array([ids + new])
        positions = np.arange(row.shape[1])[None]
        new.append(int(decoder.forward(row, np.ones_like(row), positions, decoder.empty_past(1))[0][0, -1].argmax()))
        if new[-1] in generator.stop_ids:
            break
    return new


def _stored(model: ir.Model, name: str) -> np.ndarray | None:
    """An initializer's array, or None; a float16 copy (`NAME.f16`, cast back in the graph) as float32."""
    initializers = model.graph.initializers
    if name in initializers:
        return initializers[name].const_value.numpy()
    if f"{name}.f16" in initializers:
        return initializers[f"{name}.f16"].const_value.numpy().astype(np.float32)
    return None


def _unpacked(packed: np.ndarray, bits: int, columns: int) -> np.ndarray:
    """Codes packed low bits first, as rows of `columns` float codes."""
    rows = packed.reshape(packed.shape[0], -1)
    if bits == 4:
        rows = np.stack([rows & 15, rows >> 4], axis=-1).reshape(rows.shape[0], -1)
    return rows[:, :columns].astype(np.float32)


def restored_weight(model: ir.Model, stem: str, bits: int, k: int, block: int = 32) -> np.ndarray:
    """W [K, N] rebuilt from a MatMulNBits weight's stored codes, scales, zero points and offsets, read back
    independently of the pass that wrote them."""
    codes = _unpacked(_stored(model, f"{stem}.q{bits}"), bits, -(-k // block) * block)
    scales = _stored(model, f"{stem}.scales")
    zeros = _stored(model, f"{stem}.zeros")
    zeros = (
        np.full(scales.shape, 1 << (bits - 1), np.float32) if zeros is None else _unpacked(zeros, bits, scales.shape[1])
    )
    values = (codes.reshape(codes.shape[0], -1, block) - zeros[..., None]) * scales[..., None]
    offsets = _stored(model, f"{stem}.offsets")
    if offsets is not None:
        values = values + offsets.T[..., None]
    return values.reshape(codes.shape[0], -1)[:, :k].T
