"""Run the clients of examples/ (Node.js, onnxruntime-genai) on a bundle and read their JSON (real processes, bounded)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parents[2] / "examples" / "node"


def run_client(script: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """`node examples/node/SCRIPT ARGS...`: its JSON line; AssertionError with its stderr when it fails."""
    done = subprocess.run(["node", str(NODE_DIR / script), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=NODE_DIR)
    assert done.returncode == 0, f"{script} failed: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def transformers_js_ids(bundle: Path, dtype: str, tokens: int, prompts: list[str]) -> list[list[int]]:
    """Greedy new ids of each prompt, from transformers.js (it tokenises the prompts itself)."""
    result = run_client("transformers-js.mjs", str(bundle), dtype, str(tokens), *prompts)
    return [row["token_ids"] for row in result["results"]]


def ort_client_ids(backend: str, bundle: Path, graph: str, tokens: int, prompts: list[list[int]]) -> list[list[int]]:
    """Greedy new ids of each prompt (token ids), from the manifest-driven loop on onnxruntime-node or -web (WASM)."""
    result = run_client("ort-client.mjs", backend, str(bundle), graph, str(tokens), *(json.dumps(p) for p in prompts))
    return [row["token_ids"] for row in result["results"]]


GENAI_PYTHON = NODE_DIR.parents[1] / ".venv-genai" / "bin" / "python"


def genai_result(bundle: Path, tokens: int, prompts: list[list[int]]) -> dict[str, Any]:
    """onnxruntime-genai's runtime on the bundle (examples/genai, in its own venv): its JSON (ids, load_s, tokens/s)."""
    script = NODE_DIR.parent / "genai" / "generate.py"
    done = subprocess.run([str(GENAI_PYTHON), str(script), str(bundle), str(tokens), *(json.dumps(p) for p in prompts)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"onnxruntime-genai failed: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def genai_ids(bundle: Path, tokens: int, prompts: list[list[int]]) -> list[list[int]]:
    """Greedy new ids of each prompt (token ids) from onnxruntime-genai's runtime."""
    return [row["token_ids"] for row in genai_result(bundle, tokens, prompts)["results"]]


def our_greedy_ids(folder: Path, prompts: list[str], tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, greedy new ids) of each raw prompt through our runtime, one prompt at a time."""
    from onnxforge.runtime.generate import GenerationSettings, Generator

    generator = Generator(folder)
    rows = [generator.prompt_ids(p, raw=True) for p in prompts]
    settings = GenerationSettings(max_new_tokens=tokens)
    return rows, [generator.run([ids], settings).complete().completions[0].token_ids for ids in rows]


def with_float_accumulation(folder: Path, out: Path) -> Path:
    """A copy of the folder whose MatMulNBits compute in float (accuracy_level 0), as onnxruntime-web's WASM kernel
    does whatever the attribute says; the reference for that client's ids."""
    import shutil

    import onnx_ir as ir

    shutil.copytree(folder, out)
    model = ir.load(out / "model.onnx")
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type == "MatMulNBits":
            node.attributes["accuracy_level"] = ir.AttrInt64("accuracy_level", 0)
    ir.save(model, out / "float-accumulation.onnx", external_data="float-accumulation.onnx_data")
    (out / "float-accumulation.onnx").replace(out / "model.onnx")
    (out / "model.onnx_data").unlink()
    return out


NEAR_TIE = 0.1  # logits: two runtimes' int4 kernels may order tokens this close differently


def same_ids_but_near_ties(folder: Path, prompts: list[list[int]], ours: list[list[int]],
                           theirs: list[list[int]]) -> bool:
    """Whether each row is identical, or first differs where our logits of the two tokens are within NEAR_TIE."""
    import numpy as np

    from onnxforge.runtime.decoder import Decoder

    decoder = Decoder(folder)
    for prompt, mine, other in zip(prompts, ours, theirs, strict=True):
        step = next((i for i, (a, b) in enumerate(zip(mine, other)) if a != b), None)
        if step is None:
            if len(mine) != len(other):
                return False
            continue
        row = np.array([prompt + mine[:step]])
        logits = decoder.forward(row, np.ones_like(row), np.arange(row.shape[1])[None], decoder.empty_past(1))[0]
        if abs(float(logits[0, -1, mine[step]] - logits[0, -1, other[step]])) > NEAR_TIE:
            return False
    return True
