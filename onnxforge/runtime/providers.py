"""Execution providers: names users type, what this onnxruntime build offers, and the fallback chain.

A preference is a provider name or a list of them. Without `strict`, the chain ends with the
next slower providers (tensorrt -> cuda -> cpu) and every skipped provider is logged with its
reason; with `strict`, an unavailable provider is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from onnxforge.cache import cache_dir
from onnxforge.errors import BadInput

log = logging.getLogger("onnxforge.runtime")

ORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
FALLBACK_ORDER = ("tensorrt", "cuda", "cpu")
DEVICE_OF = {"tensorrt": "cuda", "cuda": "cuda", "cpu": "cpu"}


@dataclass(frozen=True)
class ProviderSettings:
    """Which providers to try and the options that matter for each of them."""

    preference: tuple[str, ...] = ("cpu",)
    strict: bool = False
    threads: int = 0
    device_id: int = 0
    trt_cache_dir: Path | None = None
    trt_fp16: bool = False

    def __post_init__(self) -> None:
        unknown = [name for name in self.preference if name not in ORT_NAMES]
        if unknown or not self.preference:
            raise BadInput(f"unknown provider {', '.join(unknown) or '(none)'}: choose from {', '.join(ORT_NAMES)}")
        if self.threads < 0 or self.device_id < 0:
            raise BadInput("threads and device id must be >= 0")

    @classmethod
    def parse(cls, text: str, **options: Any) -> ProviderSettings:
        """Settings from a comma-separated preference such as 'tensorrt,cuda'."""
        return cls(preference=tuple(part.strip().lower() for part in text.split(",") if part.strip()), **options)


@dataclass(frozen=True)
class ProviderChoice:
    """The providers handed to onnxruntime, in order, and the ones skipped as unavailable."""

    names: tuple[str, ...]
    options: tuple[dict[str, Any], ...]
    skipped: tuple[str, ...] = field(default=())


def choose_providers(settings: ProviderSettings, available: list[str] | None = None) -> ProviderChoice:
    """The usable providers of `settings` on this onnxruntime build, with fallbacks unless strict."""
    offered = set(available if available is not None else ort.get_available_providers())
    wanted = _with_fallbacks(settings.preference) if not settings.strict else settings.preference
    names = tuple(name for name in wanted if ORT_NAMES[name] in offered)
    skipped = tuple(name for name in wanted if name not in names)
    if skipped:
        reason = f"{', '.join(skipped)} not offered by this onnxruntime build (it has {', '.join(sorted(offered))})"
        if settings.strict or not names:
            raise BadInput(f"{reason}: install onnxruntime-gpu with the matching CUDA, or drop --strict-provider")
        log.warning("%s; using %s", reason, names[0])
    return ProviderChoice(names, tuple(_options(name, settings) for name in names), skipped)


def _with_fallbacks(preference: tuple[str, ...]) -> tuple[str, ...]:
    slowest_asked = max(FALLBACK_ORDER.index(name) for name in preference)
    tail = tuple(name for name in FALLBACK_ORDER[slowest_asked + 1:] if name not in preference)
    return tuple(dict.fromkeys(preference + tail))


def _options(name: str, settings: ProviderSettings) -> dict[str, Any]:
    if name == "cuda":
        return {"device_id": settings.device_id}
    if name == "tensorrt":
        cache = settings.trt_cache_dir or cache_dir() / "tensorrt"
        return {
            "device_id": settings.device_id,
            "trt_fp16_enable": settings.trt_fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
        }
    return {}


def ort_provider_list(choice: ProviderChoice) -> list[tuple[str, dict[str, Any]]]:
    """The (ORT provider name, options) pairs for `InferenceSession(providers=...)`."""
    return [(ORT_NAMES[name], options) for name, options in zip(choice.names, choice.options)]
