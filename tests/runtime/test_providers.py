"""Providers: fallback towards cpu with one logged reason, strict mode, options, unknown names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from onnxforge.errors import BadInput
from onnxforge.runtime.providers import ProviderSettings, choose_providers, ort_provider_list

CPU_ONLY = ["CPUExecutionProvider"]
GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_tensorrt_falls_back_to_cpu_with_one_logged_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="onnxforge.runtime"):
        choice = choose_providers(ProviderSettings.parse("tensorrt"), CPU_ONLY)
    assert choice.names == ("cpu",) and choice.skipped == ("tensorrt", "cuda")
    assert len(caplog.records) == 1
    assert "tensorrt, cuda not offered" in caplog.records[0].message and "using cpu" in caplog.records[0].message


def test_a_gpu_build_keeps_the_whole_chain_in_order() -> None:
    choice = choose_providers(ProviderSettings.parse("tensorrt"), GPU_BUILD)
    assert [name for name, _ in ort_provider_list(choice)] == GPU_BUILD


def test_a_list_keeps_its_order_and_ends_with_cpu() -> None:
    assert choose_providers(ProviderSettings.parse("cuda, tensorrt"), GPU_BUILD).names == ("cuda", "tensorrt", "cpu")


def test_strict_refuses_a_missing_provider() -> None:
    with pytest.raises(BadInput, match="cuda not offered.*drop --strict-provider"):
        choose_providers(ProviderSettings.parse("cuda", strict=True), CPU_ONLY)


def test_unknown_provider_lists_the_valid_names() -> None:
    with pytest.raises(BadInput, match="unknown provider rocm: choose from tensorrt, cuda, cpu"):
        ProviderSettings.parse("rocm")


def test_provider_options_carry_device_engine_cache_and_fp16(tmp_path: Path) -> None:
    settings = ProviderSettings.parse("tensorrt", device_id=1, trt_cache_dir=tmp_path, trt_fp16=True)
    trt, cuda, cpu = choose_providers(settings, GPU_BUILD).options
    assert trt["device_id"] == 1 and trt["trt_fp16_enable"] and trt["trt_engine_cache_path"] == str(tmp_path)
    assert trt["trt_engine_cache_enable"] and cuda == {"device_id": 1} and cpu == {}
