"""Block-wise weight quantisation of a MatMul weight W [K, N], and its ONNX Runtime storage forms.

Every output column n is split along K into blocks of `block` weights; a block holds integer codes
c in [0, 2^bits) and W ≈ (c - zero) * scale. Three ways to choose the codes:
- `rtn`: round to nearest on the block's own min/max (asymmetric) or ±max (symmetric). When the
  weights already sit on a 2^bits-level grid per block (a dequantised Q4_1 GGUF does), min/max
  recovers that grid, so its codes come back exactly and only the zero point is rounded.
- `gptq`: the same grid, codes chosen one input row at a time with the error pushed onto the rows
  not yet quantised through the calibration Gram matrix XᵀX (GPTQ, Frantar et al. 2022), so the
  layer's output on the calibration tokens is kept rather than the weights.
- `hqq`: onnxruntime.quantization's half-quadratic optimiser of scale and zero (data-free).
- `gguf`: a dequantised GGUF's own grid recovered bit for bit: Q4_1 blocks are d·q + m and Q8_0
  blocks d·q with d and m float16, so the float16 rounding of the min/max step is d; a block whose
  restored values differ from the weights in any bit keeps the plain min/max grid.
Zero points (`zero_point`): `integer` (rounded to a code, the fast MatMulNBits path), `float`
(keeps an existing grid exactly, on ONNX Runtime's slow CPU path for them), or `offset`: the
nearest whole zero point z plus what is left of the block's minimum m, W = (c - z)·scale + offset
with offset = m + z·scale (|offset| <= scale / 2), added to the product through the input's block
sums. For a GGUF block (c - z)·d is exact and the offset a float16: W comes back bit for bit, on
the fast path.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from onnxforge.passes.reconstruction import reconstruct_rows

METHODS = ("rtn", "gptq", "hqq", "gguf")
ZERO_POINTS = ("integer", "float", "offset")


@dataclasses.dataclass(frozen=True)
class BlockQuantized:
    """W [K, N] as codes [N, K_padded] (one row per output column), scales, zero points and offsets [N, blocks]."""

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    bits: int
    block: int
    k: int
    offsets: np.ndarray | None = None

    @property
    def symmetric_zero(self) -> int:
        """The zero point ONNX Runtime assumes when none is given: 2^(bits-1)."""
        return 1 << (self.bits - 1)

    @property
    def float_zeros(self) -> bool:
        """Zero points that are not whole numbers (need the float zero-point form)."""
        return self.zeros.dtype != np.uint8

    def dequantize(self) -> np.ndarray:
        """The weights these codes stand for, [K, N] float32."""
        n, padded = self.codes.shape
        blocks = self.codes.reshape(n, padded // self.block, self.block).astype(np.float32)
        values = (blocks - self.zeros[..., None].astype(np.float32)) * self.scales[..., None]
        if self.offsets is not None:
            values = values + self.offsets[..., None]
        return np.ascontiguousarray(values.reshape(n, padded)[:, : self.k].T)


def quantize(
    weight: np.ndarray,
    bits: int,
    block: int,
    symmetric: bool,
    method: str = "rtn",
    gram: np.ndarray | None = None,
    zero_point: str = "integer",
) -> BlockQuantized:
    """Quantise W [K, N] block-wise along K by `method` (gptq needs the input Gram matrix `gram`)."""
    padded = _padded(weight.astype(np.float32), block)
    if method == "hqq":
        return _hqq(padded, bits, block, weight.shape[0])
    if method == "gguf" or zero_point == "offset":
        return _restored_grid(padded, bits, block, symmetric, zero_point, method == "gguf", weight.shape[0])
    scales, zeros = _grid(padded, bits, block, symmetric, zero_point == "float")
    if method == "gptq":
        if gram is None:
            raise ValueError("gptq needs the calibration Gram matrix of the weight's input")
        codes = _gptq_codes(padded, _padded_gram(gram, padded.shape[0]), scales, zeros, bits, block)
    else:
        codes = _round(padded, np.repeat(scales, block, axis=1).T, np.repeat(zeros, block, axis=1).T, bits).T
    return BlockQuantized(codes.astype(np.uint8), scales, zeros, bits, block, weight.shape[0])


def on_grid(weight: np.ndarray, bits: int, block: int) -> bool:
    """Whether every block of W already sits on 2^bits evenly spaced levels (a dequantised GGUF's do)."""
    exact = quantize(weight, bits, block, symmetric=False, zero_point="float")
    step = np.repeat(exact.scales, block, axis=1)[:, : weight.shape[0]].T
    return bool(np.all(np.abs(exact.dequantize() - weight) <= 1e-3 * step))


def _padded(weight: np.ndarray, block: int) -> np.ndarray:
    """W with zero rows appended so K is a multiple of the block."""
    extra = -weight.shape[0] % block
    return np.pad(weight, ((0, extra), (0, 0))) if extra else weight


def _padded_gram(gram: np.ndarray, size: int) -> np.ndarray:
    extra = size - gram.shape[0]
    return np.pad(gram, ((0, extra), (0, extra))) if extra else gram


def _grid(weight: np.ndarray, bits: int, block: int, symmetric: bool, float_zeros: bool):
    """Per (column, block) scale and zero point from the block's range: arrays [N, blocks]."""
    k, n = weight.shape
    blocks = weight.reshape(k // block, block, n)
    top = (1 << bits) - 1
    if symmetric:
        half = 1 << (bits - 1)
        scales = np.abs(blocks).max(axis=1) / (half - 1)
        zeros = np.full(scales.shape, half, np.float64)
    else:
        low, high = blocks.min(axis=1), blocks.max(axis=1)
        scales = (high - low) / top
        zeros = -low / np.where(scales == 0, 1, scales)
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    zeros = zeros.astype(np.float32) if float_zeros else np.clip(np.round(zeros), 0, top).astype(np.uint8)
    return np.ascontiguousarray(scales.T), np.ascontiguousarray(zeros.T)


def _restored_grid(
    weight: np.ndarray, bits: int, block: int, symmetric: bool, zero_point: str, float16_steps: bool, k: int
) -> BlockQuantized:
    """Codes on each block's min/max grid held as c·scale + offset (or as (c - zero)·scale); with
    `float16_steps`, the step rounded to float16 wherever that restores the block bit for bit (GGUF)."""
    n = weight.shape[1]
    blocks = weight.reshape(-1, block, n)
    top = (1 << bits) - 1
    zero = (1 << (bits - 1)) if symmetric else 0
    base = np.zeros(blocks.shape[::2], np.float32) if symmetric else blocks.min(axis=1)
    steps = (np.abs(blocks).max(axis=1) / (zero - 1) if symmetric else (blocks.max(axis=1) - base) / top).astype(
        np.float32
    )
    steps = np.where(steps == 0, np.float32(1), steps)
    codes, restored = _codes_on(blocks, base, steps, zero, top)
    if float16_steps:
        half_steps = steps.astype(np.float16).astype(np.float32)
        half_codes, half_restored = _codes_on(blocks, base, half_steps, zero, top)
        exact = np.all(half_restored == blocks, axis=1)
        steps = np.where(exact, half_steps, steps)
        codes = np.where(exact[:, None], half_codes, codes)
    scales, rows = np.ascontiguousarray(steps.T), _code_rows(codes)
    if symmetric:
        return BlockQuantized(rows, scales, np.full(scales.shape, zero, np.uint8), bits, block, k)
    if zero_point == "float":
        return BlockQuantized(rows, scales, np.ascontiguousarray((-base / steps).T, np.float32), bits, block, k)
    # the nearest whole zero point, and what is left of the minimum: base + c·step = (c - z)·step + offset
    zeros = np.clip(np.round(-base / steps), 0, top)
    offsets = base.astype(np.float64) + zeros * steps.astype(np.float64)
    return BlockQuantized(
        rows, scales, np.ascontiguousarray(zeros.T.astype(np.uint8)), bits, block, k, offsets.T.astype(np.float32)
    )


def _codes_on(blocks: np.ndarray, base: np.ndarray, steps: np.ndarray, zero: int, top: int):
    """Nearest codes of blocks [B, block, N] on base + (c - zero)·step, and the values they restore."""
    codes = np.clip(np.round((blocks - base[:, None]) / steps[:, None] + zero), 0, top)
    return codes, (codes - np.float32(zero)) * steps[:, None] + base[:, None]


def _code_rows(codes: np.ndarray) -> np.ndarray:
    """Codes [B, block, N] as rows [N, B·block] of uint8."""
    return np.ascontiguousarray(codes.reshape(-1, codes.shape[2]).T.astype(np.uint8))


def _round(values: np.ndarray, scales: np.ndarray, zeros: np.ndarray, bits: int) -> np.ndarray:
    """Nearest code of each value on its grid (arrays broadcast together)."""
    return np.clip(np.round(values / scales + zeros.astype(np.float32)), 0, (1 << bits) - 1)


def _gptq_codes(
    weight: np.ndarray, gram: np.ndarray, scales: np.ndarray, zeros: np.ndarray, bits: int, block: int
) -> np.ndarray:
    """GPTQ on a fixed grid: rows in order, each row's rounding error spread over the later rows."""
    codes = np.empty(weight.shape, np.float32)

    def nearest_on_grid(row: int, work: np.ndarray, _: np.ndarray) -> np.ndarray:
        scale, zero = scales[:, row // block], zeros[:, row // block].astype(np.float32)
        codes[row] = _round(work[row], scale, zero, bits)
        return (codes[row] - zero) * scale

    reconstruct_rows(weight, gram, nearest_on_grid)
    return codes.T


def _hqq(weight: np.ndarray, bits: int, block: int, k: int) -> BlockQuantized:
    """onnxruntime.quantization's HQQ (torch): scale and integer zero optimised per block."""
    import torch
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, HQQWeightOnlyQuantizer

    quantizer = HQQWeightOnlyQuantizer(HQQWeightOnlyQuantConfig(block_size=block, bits=bits))
    codes, scales, zeros = quantizer.quantize_internal(
        torch.from_numpy(np.ascontiguousarray(weight.T)), bits=bits, group_size=block, axis=1
    )
    n = weight.shape[1]
    zeros_u8 = np.clip(np.round(zeros.numpy()), 0, (1 << bits) - 1).astype(np.uint8).reshape(n, -1)
    return BlockQuantized(
        codes.numpy().astype(np.uint8), scales.numpy().astype(np.float32).reshape(n, -1), zeros_u8, bits, block, k
    )


def pack_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack codes [rows, count] into bytes along each row, low bits first (ONNX Runtime's order)."""
    if bits == 8:
        return codes.astype(np.uint8)
    per_byte = 8 // bits
    extra = -codes.shape[1] % per_byte
    codes = np.pad(codes, ((0, 0), (0, extra))).astype(np.uint8)
    grouped = codes.reshape(codes.shape[0], -1, per_byte)
    packed = np.zeros(grouped.shape[:2], np.uint8)
    for i in range(per_byte):
        packed |= grouped[:, :, i] << (bits * i)
    return packed
