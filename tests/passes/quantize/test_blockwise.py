"""Block-wise quantisation arithmetic: round trips within the grid's error, exact grids, GPTQ vs RTN, packing."""

from __future__ import annotations

import numpy as np
import pytest

from onnxforge.passes.quantize.blockwise import on_grid, pack_rows, quantize

K, N, BLOCK = 128, 48, 32


def gaussian(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.05, size=(K, N)).astype(np.float32)


def per_weight_scale(quantized) -> np.ndarray:
    """Each weight's block scale, [K, N]."""
    return np.repeat(quantized.scales, quantized.block, axis=1)[:, :K].T


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_round_to_nearest_is_within_half_a_step(bits: int, symmetric: bool) -> None:
    weight = gaussian()
    quantized = quantize(weight, bits, BLOCK, symmetric)
    error = np.abs(quantized.dequantize() - weight)
    # asymmetric: the rounded zero point can shift the grid by up to half a step more
    allowed = per_weight_scale(quantized) * (0.5 if symmetric else 1.0) + 1e-7
    assert np.all(error <= allowed)
    assert quantized.codes.max() < 2**bits and quantized.codes.shape == (N, K)
    assert np.abs(quantized.dequantize() - weight).mean() < 0.05 * (0.2 if bits == 8 else 1.0)


def q4_1_grid(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Weights on a Q4_1 grid (scale and min per block of 32, codes 0..15), and those codes [N, K]."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 16, size=(N, K))
    codes[:, ::BLOCK] = 0  # every block spans the full 16 levels, as Q4_1 blocks do
    codes[:, 1::BLOCK] = 15
    scale = rng.uniform(0.001, 0.01, size=(N, K // BLOCK)).repeat(BLOCK, axis=1)
    low = -scale * rng.uniform(0.5, 14.5, size=(N, K // BLOCK)).repeat(BLOCK, axis=1)  # zero inside the range
    return (codes * scale + low).T.astype(np.float32), codes


def test_existing_grid_is_kept_exactly_with_float_zero_points() -> None:
    weight, codes = q4_1_grid()
    assert on_grid(weight, 4, BLOCK) and not on_grid(gaussian(), 4, BLOCK) and not on_grid(weight, 4, 2 * BLOCK)
    quantized = quantize(weight, 4, BLOCK, False, zero_point="float")
    assert np.array_equal(quantized.codes, codes)
    np.testing.assert_allclose(quantized.dequantize(), weight, atol=1e-6)


def test_existing_grid_keeps_its_codes_with_integer_zero_points() -> None:
    weight, codes = q4_1_grid()
    quantized = quantize(weight, 4, BLOCK, False)
    assert np.array_equal(quantized.codes, codes)
    error = quantized.dequantize() - weight
    per_block = error.T.reshape(N, K // BLOCK, BLOCK)
    assert np.allclose(per_block, per_block[..., :1], atol=1e-6)  # one constant offset per block
    assert np.all(np.abs(error) <= per_weight_scale(quantized) / 2 + 1e-6)


def test_gptq_keeps_outputs_better_than_rounding_on_anisotropic_inputs() -> None:
    rng = np.random.default_rng(2)
    mixing = rng.normal(size=(K, K)) * np.exp(rng.normal(0, 1.0, size=K))
    inputs = rng.normal(size=(512, K)) @ mixing  # correlated channels of unequal scale, as activations are
    weight = gaussian(3)
    gram = inputs.T @ inputs
    rtn = quantize(weight, 4, BLOCK, False)
    gptq = quantize(weight, 4, BLOCK, False, method="gptq", gram=gram)
    assert np.array_equal(gptq.scales, rtn.scales)  # same grid, other codes
    error_rtn = np.linalg.norm(inputs @ (rtn.dequantize() - weight))
    error_gptq = np.linalg.norm(inputs @ (gptq.dequantize() - weight))
    assert error_gptq < 0.8 * error_rtn


def test_gptq_needs_the_gram_matrix() -> None:
    with pytest.raises(ValueError, match="Gram"):
        quantize(gaussian(), 4, BLOCK, False, method="gptq")


def test_hqq_round_trip() -> None:
    weight = gaussian(4)
    quantized = quantize(weight, 4, BLOCK, False, method="hqq")
    assert quantized.codes.shape == (N, K) and quantized.zeros.dtype == np.uint8
    relative = np.linalg.norm(quantized.dequantize() - weight) / np.linalg.norm(weight)
    assert relative < 0.12


def test_padding_when_k_is_not_a_multiple_of_the_block() -> None:
    weight = gaussian()[:100]
    quantized = quantize(weight, 4, BLOCK, False)
    assert quantized.codes.shape == (N, 128) and quantized.dequantize().shape == (100, N)
    assert np.abs(quantized.dequantize() - weight).max() < 0.05


def test_packing_puts_the_first_code_in_the_low_bits() -> None:
    assert pack_rows(np.array([[1, 2, 3]]), 4).tolist() == [[0x21, 0x03]]
    assert pack_rows(np.array([[7, 200]]), 8).tolist() == [[7, 200]]


def gguf_dequantized(kind: str, seed: int = 3) -> np.ndarray:
    """Gaussian weights [K, N] through gguf's own quantiser and dequantiser (blocks along K)."""
    import gguf

    rows = np.random.default_rng(seed).normal(0.0, 0.05, size=(N, K)).astype(np.float32)
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    return np.ascontiguousarray(gguf.quants.dequantize(gguf.quants.quantize(rows, qtype), qtype).T)


@pytest.mark.parametrize("kind,bits,symmetric", [("Q4_1", 4, False), ("Q8_0", 8, True)])
def test_gguf_grids_come_back_bit_for_bit(kind: str, bits: int, symmetric: bool) -> None:
    weight = gguf_dequantized(kind)
    quantized = quantize(weight, bits, BLOCK, symmetric, method="gguf", zero_point="offset")
    assert np.array_equal(quantized.dequantize(), weight)  # every bit, not within a tolerance
    assert quantized.zeros.dtype == np.uint8  # whole zero points: ONNX Runtime's fast path
    halves = [quantized.scales] + ([] if symmetric else [quantized.offsets])
    assert all(
        np.array_equal(a.astype(np.float16).astype(np.float32), a) for a in halves
    )  # float16 storage is lossless
    if not symmetric:
        assert np.all(np.abs(quantized.offsets) <= quantized.scales / 2)  # what is left of the minimum


def test_a_block_off_the_gguf_grid_keeps_the_min_max_grid() -> None:
    weight = gguf_dequantized("Q4_1")
    weight[5, 7] += 1e-4  # one weight of block 0 of column 7 is no longer on its grid
    quantized = quantize(weight, 4, BLOCK, False, method="gguf", zero_point="offset")
    restored = quantized.dequantize()
    same = restored == weight
    assert not same[:BLOCK, 7].all() and same[BLOCK:, 7].all() and np.delete(same, 7, axis=1).all()
    assert np.abs(restored - weight)[:BLOCK, 7].max() <= quantized.scales[7, 0] / 2 + 1e-7


def test_offsets_hold_a_min_max_grid_without_rounding_the_zero_point() -> None:
    weight = gaussian()
    offset = quantize(weight, 4, BLOCK, False, zero_point="offset")
    rounded = quantize(weight, 4, BLOCK, False)
    assert np.array_equal(offset.codes, quantize(weight, 4, BLOCK, False, zero_point="float").codes)
    error = np.abs(offset.dequantize() - weight)
    assert np.all(error <= per_weight_scale(offset) * 0.5 + 1e-6)  # half a step: no zero-point shift
    assert error.mean() < np.abs(rounded.dequantize() - weight).mean()
