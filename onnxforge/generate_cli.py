"""`onnxforge generate` and the flags it shares with `chat`: model loading, sampling, output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from onnxforge.errors import BadInput
from onnxforge.progress import console
from onnxforge.runtime.generate import GenerationRun, GenerationSettings, Generator
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


def generator_from_args(args: argparse.Namespace) -> Generator:
    """Open the folder with the provider settings given on the command line."""
    providers = ProviderSettings.parse(args.provider, strict=args.strict_provider, threads=args.threads,
                                       device_id=args.device_id, trt_cache_dir=args.trt_cache, trt_fp16=args.trt_fp16)
    return Generator(args.dir, SessionSettings(providers, args.optimization, args.ort_cache))


def settings_from_args(args: argparse.Namespace, truncate: bool = False) -> GenerationSettings:
    """Generation settings from the flags (invalid values are BadInput)."""
    sampling = SamplingSettings(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed)
    return GenerationSettings(args.max_new_tokens, sampling, tuple(args.stop), truncate)


def run_generate(args: argparse.Namespace) -> int:
    """Answer each PROMPT (batched); stream the single-prompt case when asked; print text or JSON."""
    settings = settings_from_args(args, args.truncate)
    if args.stream and len(args.prompt) > 1:
        raise BadInput("--stream takes one prompt: drop --stream to answer several prompts in a batch")
    generator = generator_from_args(args)
    run = generator.run([generator.prompt_ids(prompt, args.raw) for prompt in args.prompt], settings)
    if args.stream and not args.json:
        for deltas in run:
            sys.stdout.write(deltas[0])
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        run.complete()
    if args.json:
        print(json.dumps(_json_report(run, generator.decoder.provider)))
    elif not args.stream:
        print("\n\n".join(completion.text for completion in run.completions))
    _print_stats(run, generator.decoder.provider)
    return 0


def _json_report(run: GenerationRun, provider: str) -> dict[str, Any]:
    rows = [
        {"text": c.text, "token_ids": c.token_ids, "prompt_tokens": c.prompt_tokens,
         "new_tokens": len(c.token_ids), "finish_reason": c.finish_reason}
        for c in run.completions
    ]
    timing = {"ttft_s": round(run.stats.prefill_s, 4), "decode_tokens_per_s": round(run.stats.decode_tokens_per_s, 2),
              "overhead_ms_per_step": round(run.stats.overhead_s_per_step * 1000, 3), "provider": provider}
    return {**rows[0], **timing} if len(rows) == 1 else {"results": rows, "batch": len(rows), **timing}


def _print_stats(run: GenerationRun, provider: str) -> None:
    stats = run.stats
    new = sum(len(c.token_ids) for c in run.completions)
    console.print(f"[dim]{stats.prompt_tokens} prompt tokens, {new} new; first token {stats.prefill_s * 1000:.0f} ms, "
                  f"then {stats.decode_tokens_per_s:.1f} tokens/s ({provider}, "
                  f"{stats.overhead_s_per_step * 1000:.2f} ms/step outside onnxruntime)[/dim]")
