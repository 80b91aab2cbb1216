"""Where decode time goes: ONNX Runtime's profiler over N single-token steps, summed per op type.

    .venv/bin/python benchmarks/profile_ops.py DIR [DIR...] [--steps 64] [--threads 2]

Prints, per model, milliseconds per token by op type (kernel time only) and the share of the
step that no kernel accounts for (session overhead, memory copies). The prompt step is excluded.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort


def profile(folder: Path, steps: int, threads: int) -> tuple[dict[str, float], float]:
    """(ms per token by op type, ms per token for the whole run call) over `steps` decode steps."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as scratch:
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        heads, head_dim = _cache_shape(folder)
        past = {
            i.name: np.zeros((1, heads, 0, head_dim), np.float32)
            for i in session.get_inputs()
            if i.name.startswith("past")
        }
        outputs = [o.name for o in session.get_outputs()]
        ids = np.array([[1, 504, 3458, 314, 260, 3575, 282]], np.int64)
        length, new = 0, ids
        for _ in range(steps + 1):
            length += new.shape[1]
            feeds = {
                "input_ids": new,
                "attention_mask": np.ones((1, length), np.int64),
                "position_ids": np.arange(length - new.shape[1], length, dtype=np.int64)[None],
                **past,
            }
            results = dict(zip(outputs, session.run(None, {k: v for k, v in feeds.items() if k in _names(session)})))
            new = np.array([[int(results["logits"][0, -1].argmax())]], np.int64)
            past = {
                name.replace("present", "past_key_values"): value
                for name, value in results.items()
                if name.startswith("present")
            }
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"][1:]  # drop the prompt step
    first = runs[0]["ts"] if runs else 0
    per_op: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= first:
            per_op[event["args"]["op_name"]] += event["dur"] / 1000 / steps
    return dict(per_op), sum(r["dur"] for r in runs) / 1000 / steps


def _cache_shape(folder: Path) -> tuple[int, int]:
    """KV heads and head size from our config.json, or from onnxruntime-genai's genai_config.json."""
    if (folder / "genai_config.json").exists():
        decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
        return decoder["num_key_value_heads"], decoder["head_size"]
    config = json.loads((folder / "config.json").read_text())
    return config["num_key_value_heads"], config.get("head_dim") or config["hidden_size"] // config[
        "num_attention_heads"
    ]


def _names(session: ort.InferenceSession) -> set[str]:
    return {i.name for i in session.get_inputs()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for folder in args.folders:
        per_op, total = profile(folder, args.steps, args.threads)
        kernels = sum(per_op.values())
        print(
            f"\n{folder}: {total:.2f} ms per token in session.run ({1000 / total:.1f} tok/s), kernels {kernels:.2f} ms"
        )
        for op, ms in sorted(per_op.items(), key=lambda item: -item[1]):
            print(f"  {op:34s} {ms:7.3f} ms  {100 * ms / total:5.1f} %")
        print(f"  {'(between kernels)':34s} {total - kernels:7.3f} ms  {100 * (total - kernels) / total:5.1f} %")


if __name__ == "__main__":
    main()
