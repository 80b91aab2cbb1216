"""`onnxforge bench`: time folders and the engines we compete with, each in its own fresh process.

Every engine gets the same prompts as token ids (the first folder's chat template and tokenizer),
greedy, exactly N new tokens, the same thread count; see `protocol.py` for what is timed.
Anchors live in their own virtual environments under `$ONNXFORGE_CACHE/anchors` (`make anchors`);
one that is not there is reported as skipped with the reason, never dropped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxforge.cache import cache_dir
from onnxforge.errors import BadInput
from onnxforge.eval.bandwidth import bytes_per_token, kv_bytes_per_position, read_bandwidth
from onnxforge.folder import MODEL_FILE, check_folder, read_manifest

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "What is the capital of France?",
    "Explain how a rainbow forms.",
    "Give me three tips for learning Python.",
    "Describe the water cycle in simple words.",
    "Why is the sky blue?",
    "Write a haiku about autumn leaves.",
    "What are the benefits of regular exercise?",
]
LONG_PROMPT_TOKENS = 512
ANCHOR_NAMES = ("torch", "optimum", "genai", "llamacpp")


@dataclass(frozen=True)
class BenchSettings:
    """What every engine is asked to do."""

    threads: int = 2
    repeats: int = 3
    new_tokens: int = 64
    batch: int = 8

    def __post_init__(self) -> None:
        if self.threads < 1 or self.repeats < 1 or self.new_tokens < 2 or not 1 <= self.batch <= len(PROMPTS):
            raise BadInput(f"bench needs threads >= 1, repeats >= 1, new tokens >= 2 and batch in 1..{len(PROMPTS)}")


@dataclass(frozen=True)
class Engine:
    """One process to run: which Python, which engine module, on which model."""

    name: str
    python: Path
    module: str
    model: str
    model_bytes: int
    batch: int = 1


def anchors_dir() -> Path:
    """Where `make anchors` puts the anchor venvs and models."""
    return cache_dir() / "anchors"


def folder_engines(folders: list[Path], batch: int) -> list[Engine]:
    """onnxforge on every folder, at batch 1 and at `batch`."""
    engines = []
    for folder in folders:
        size = sum(f.stat().st_size for f in folder.glob(f"{MODEL_FILE}*"))
        for rows in dict.fromkeys((1, batch)):
            engines.append(Engine(f"onnxforge {folder.name}", Path(sys.executable),
                                  "onnxforge.eval.anchors.onnxforge_engine", str(folder.resolve()), size, rows))
    return engines


def anchor_engines(names: list[str], source: str) -> tuple[list[Engine], list[dict[str, str]]]:
    """The requested anchors that are installed, and a skip reason for each one that is not."""
    unknown = [name for name in names if name not in ANCHOR_NAMES]
    if unknown:
        raise BadInput(f"unknown anchor {', '.join(unknown)}: choose from {', '.join(ANCHOR_NAMES)}")
    engines, skipped = [], []
    for name in names:
        for engine, reason in _anchor(name, source):
            if engine:
                engines.append(engine)
            else:
                skipped.append({"engine": name, "skipped": reason})
    return engines, skipped


def _anchor(name: str, source: str) -> list[tuple[Engine | None, str]]:
    root = anchors_dir()
    if name == "torch":
        return [(Engine("torch eager fp32", Path(sys.executable), "onnxforge.eval.anchors.torch_engine", source,
                        0), "")]
    plans = {
        "optimum": [("optimum fp32", root / "optimum" / "model")],
        "genai": [("onnxruntime-genai fp32", root / "genai" / "fp32"),
                  ("onnxruntime-genai int4", root / "genai" / "int4")],
        "llamacpp": [("llama.cpp Q4_1", root / "llamacpp" / "model.gguf")],
    }[name]
    python = root / name / "venv" / "bin" / "python"
    found = []
    for label, model in plans:
        if not python.is_file() or not model.exists():
            found.append((None, f"{label}: {python if not python.is_file() else model} not found; run `make anchors`"))
            continue
        files = [f for f in model.rglob("*") if f.is_file()] if model.is_dir() else [model]
        size = sum(f.stat().st_size for f in files)
        found.append((Engine(label, python, f"onnxforge.eval.anchors.{name}_engine", str(model), size), ""))
    return found


# Linux carries a parent's resident size at fork time into the child's ru_maxrss; a small Python
# parent in between keeps the engine's peak RSS its own rather than this process's.
_SMALL_PARENT = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def run_engine(
    engine: Engine, rows: list[list[int]], long_prompt: list[int], settings: BenchSettings
) -> dict[str, Any]:
    """Run one engine process; its JSON figures, or a skip entry with the error it printed."""
    command = [str(engine.python), "-m", engine.module, "--model", engine.model,
               "--rows", json.dumps(rows[:engine.batch]),
               "--long-prompt", json.dumps(long_prompt), "--new-tokens", str(settings.new_tokens),
               "--repeats", str(settings.repeats), "--threads", str(settings.threads)]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", _SMALL_PARENT, *command], capture_output=True, text=True,
                            env=environment)
    base = {"engine": engine.name, "model": engine.model, "model_bytes": engine.model_bytes, "batch": engine.batch}
    if result.returncode != 0:
        return {**base, "skipped": f"failed: {result.stderr.strip().splitlines()[-1:] or ['no output']}"}
    return {**base, **json.loads(result.stdout)}


def bench_inputs(folder: Path) -> tuple[list[list[int]], list[int]]:
    """The chat prompts as token ids (first folder's template and tokenizer) and a 512-token text
    (shorter when the model's context is)."""
    from onnxforge.data import data_file
    from onnxforge.runtime.decoder import context_length
    from onnxforge.runtime.text import TextCodec

    codec = TextCodec(folder)
    rows = [codec.encode(codec.render_chat([{"role": "user", "content": prompt}])) for prompt in PROMPTS]
    length = min(LONG_PROMPT_TOKENS, (context_length(folder) or LONG_PROMPT_TOKENS + 1) - 1)
    return rows, codec.encode(data_file("wikitext2").read_text(encoding="utf-8"))[:length]


def _kv_position_bytes(folder: Path) -> int:
    """Float32 keys and values of one position of the first folder's model (every engine runs that model)."""
    architecture = read_manifest(folder).get("architecture", {})
    keys = ("num_layers", "num_kv_heads", "head_dim")
    return kv_bytes_per_position(*(architecture[key] for key in keys)) if all(k in architecture for k in keys) else 0


def _roofline(run: dict[str, Any], kv_position: int, prompt_tokens: int, new_tokens: int,
              bandwidth: float) -> dict[str, Any]:
    """Bytes a batch-1 step reads (the model's bytes on disk + its cache) and the rate that achieves, also as a
    fraction of the machine's read bandwidth; nothing for batches, skipped runs or a model of unknown size."""
    if "skipped" in run or run["batch"] != 1 or not run["model_bytes"]:
        return {}
    step = bytes_per_token(run["model_bytes"], kv_position, prompt_tokens, new_tokens)
    achieved = step * run["decode_tokens_per_s"]["median"]
    return {"bytes_per_token": step, "achieved_bytes_per_s": round(achieved),
            "bandwidth_fraction": round(achieved / bandwidth, 3)}


def run_bench(
    folders: list[Path], anchors: list[str], settings: BenchSettings, out: Path | None, command: str
) -> dict[str, Any]:
    """Every folder and anchor, one process each, one after the other; written to OUT/bench.json."""
    from onnxforge.progress import console

    for folder in folders:
        check_folder(folder)
    source = read_manifest(folders[0]).get("source", {}).get("name", "smollm2-135m")
    extra, skipped = anchor_engines(anchors, source)
    rows, long_prompt = bench_inputs(folders[0])
    with console.status(f"measuring this machine's read bandwidth ({settings.threads} threads)"):
        bandwidth = read_bandwidth(settings.threads)
    kv_position = _kv_position_bytes(folders[0])
    runs = []
    for engine in folder_engines(folders, settings.batch) + extra:
        with console.status(f"timing {engine.name} (batch {engine.batch})"):
            run = run_engine(engine, rows, long_prompt, settings)
        runs.append({**run, **_roofline(run, kv_position, len(rows[0]), settings.new_tokens, bandwidth)})
    report = {"command": command, "settings": settings.__dict__, "read_bandwidth_bytes_per_s": round(bandwidth),
              "prompt_tokens": len(rows[0]), "runs": runs + skipped}
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2))
    return report
