"""`onnxforge demo`: export the default model once (cached), then answer a chat prompt through ONNX Runtime."""

from __future__ import annotations

import os
import time
from pathlib import Path

from onnxforge import __version__
from onnxforge.manifest import read_manifest
from onnxforge.progress import Steps, console
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.greedy import greedy_tokens
from onnxforge.runtime.text import TextCodec


def cache_dir() -> Path:
    """Where the demo keeps its export: $ONNXFORGE_CACHE, else ~/.cache/onnxforge."""
    return Path(os.environ.get("ONNXFORGE_CACHE", Path.home() / ".cache" / "onnxforge"))


def run_demo(prompt: str, max_new_tokens: int) -> str:
    """Export (or reuse) the default model, answer `prompt` greedily, print each step's time."""
    from onnxforge.models import DEFAULT_MODEL

    folder = cache_dir() / DEFAULT_MODEL
    steps = Steps()
    if _usable_export(folder):
        console.print(f"reusing the export in {folder} (delete it to export again)")
    else:
        from onnxforge.exporter.export import export_model

        with steps.step("export", f"export {DEFAULT_MODEL} to {folder} (once; later runs reuse it)"):
            export_model(DEFAULT_MODEL, folder, force=True)
    with steps.step("session", "open an ONNX Runtime session"):
        decoder, codec = Decoder(folder), TextCodec(folder)
    answer, ttft, decode_rate = _answer(decoder, codec, prompt, max_new_tokens)
    console.print(f"[bold]prompt:[/bold] {prompt}")
    console.print(f"[bold]answer:[/bold] {answer}")
    console.print(f"first token after {ttft * 1000:.0f} ms, then {decode_rate:.1f} tokens/s (greedy, CPU)")
    print(answer)
    return answer


def _usable_export(folder: Path) -> bool:
    manifest = read_manifest(folder)
    return manifest.get("onnxforge_version") == __version__ and manifest.get("parity", {}).get("passed", False)


def _answer(decoder: Decoder, codec: TextCodec, prompt: str, max_new_tokens: int) -> tuple[str, float, float]:
    prompt_ids = codec.encode(codec.render_chat([{"role": "user", "content": prompt}]))
    stop = frozenset(codec.stop_ids())
    start = time.perf_counter()
    tokens, first = [], 0.0
    for token in greedy_tokens(decoder, prompt_ids, max_new_tokens, stop):
        first = first or time.perf_counter() - start
        tokens.append(token)
    decode_seconds = time.perf_counter() - start - first
    rate = (len(tokens) - 1) / decode_seconds if len(tokens) > 1 and decode_seconds > 0 else 0.0
    return codec.decode(tokens).strip(), first, rate
