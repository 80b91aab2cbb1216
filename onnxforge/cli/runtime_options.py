"""The flags `generate`, `chat` and `embed` share: which folder, provider and threads, sampling, stopping."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.runtime.generate import GenerationSettings, Generator
from onnxforge.runtime.providers import ORT_NAMES, ProviderSettings
from onnxforge.runtime.sampling import SamplingSettings
from onnxforge.runtime.session import OPTIMIZATION_LEVELS, SessionSettings


def add_runtime_arguments(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    """Flags shared by generate and chat: provider, threads, sampling, stopping."""
    parser.add_argument("dir", metavar="DIR", help="a folder written by onnxforge export or compress")
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help="default %(default)s")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=0, help="keep the K most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1] (1 = off)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats (1 = off)")
    parser.add_argument("--seed", type=int, help="seed of the sampler (same seed, same text)")
    parser.add_argument("--stop", action="append", default=[], metavar="STR", help="stop at this text (repeatable)")
    add_provider_arguments(parser)


def add_provider_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of every command that opens a session: provider, threads, GPU, optimisation, caches."""
    parser.add_argument("--provider", default="cpu", metavar="NAME[,NAME]",
                        help=f"{', '.join(ORT_NAMES)} or a list; falls back towards cpu (default %(default)s)")
    parser.add_argument("--strict-provider", action="store_true", help="fail instead of falling back")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = onnxruntime's choice)")
    parser.add_argument("--device-id", type=int, default=0, help="GPU index for cuda/tensorrt")
    parser.add_argument("--trt-cache", type=Path, metavar="DIR", help="TensorRT engine cache folder")
    parser.add_argument("--trt-fp16", action="store_true", help="let TensorRT run in float16")
    parser.add_argument("--optimization", choices=sorted(OPTIMIZATION_LEVELS), default="all",
                        help="onnxruntime graph optimisation level (default %(default)s)")
    parser.add_argument("--ort-cache", type=Path, metavar="DIR",
                        help="keep onnxruntime's optimised graph here so later loads are faster")


def session_settings_from_args(args: argparse.Namespace) -> SessionSettings:
    """Session settings from the provider flags."""
    providers = ProviderSettings.parse(args.provider, strict=args.strict_provider, threads=args.threads,
                                       device_id=args.device_id, trt_cache_dir=args.trt_cache, trt_fp16=args.trt_fp16)
    return SessionSettings(providers, args.optimization, args.ort_cache)


def generator_from_args(args: argparse.Namespace) -> Generator:
    """Open the folder with the provider settings given on the command line."""
    return Generator(args.dir, session_settings_from_args(args))


def settings_from_args(args: argparse.Namespace, truncate: bool = False) -> GenerationSettings:
    """Generation settings from the flags (invalid values are BadInput)."""
    sampling = SamplingSettings(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed)
    return GenerationSettings(args.max_new_tokens, sampling, tuple(args.stop), truncate)
