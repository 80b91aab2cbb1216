"""Bundles in every client: size, files, operators, the oldest ONNX Runtime, load time and greedy speed.

    .venv/bin/python benchmarks/bundle_table.py --web /tmp/b-web --web-fused /tmp/b-web-fused \
        --mobile /tmp/b-mobile --genai /tmp/b-genai --out docs/bundles-run

Each client loads the bundle in its own process (Node.js for transformers.js, onnxruntime-node and
onnxruntime-web's WASM build; the .venv-genai environment for onnxruntime-genai; this Python for
ONNX Runtime), generates 32 greedy tokens for two prompts, and reports its load time and tokens/s
(wall time of generation, prompt included). Every client's ids are compared with ours.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from onnxforge.runtime.generate import GenerationSettings, Generator
from onnxforge.runtime.session import SessionSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.bundle.clients import genai_result, run_client  # noqa: E402 - the same client runners as the tests

PROMPTS = ["The capital of France is", "def fibonacci(n):"]
TOKENS = 32
WEB_DTYPES = {"onnx/model.onnx": "fp32", "onnx/model_q4.onnx": "q4"}


def python_client(bundle: Path, graph: str) -> tuple[dict[str, Any], list[list[int]], list[list[int]]]:
    """Our runtime on the bundle's graph: figures, prompt ids and new ids."""
    start = time.perf_counter()
    generator = Generator(bundle, SessionSettings(graph=graph))
    load = time.perf_counter() - start
    rows = [generator.prompt_ids(p, raw=True) for p in PROMPTS]
    start, ids = time.perf_counter(), []
    for row in rows:
        ids.append(generator.run([row], GenerationSettings(TOKENS)).complete().completions[0].token_ids)
    seconds = time.perf_counter() - start
    return {"load_s": load, "tokens_per_s": sum(map(len, ids)) / seconds}, rows, ids


def bundle_facts(bundle: Path, graph: str) -> dict[str, Any]:
    """Size, files and operator counts of one graph of a bundle, from its manifest."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    facts = next(g for g in manifest["graphs"] if g["path"] == graph)
    stem = Path(graph).name
    weights = sum(f["bytes"] for f in manifest["files"] if Path(f["path"]).name.startswith(stem))
    return {"bundle": bundle.name, "target": manifest["target"], "graph": graph,
            "graph_mib": round(weights / 2**20, 1), "bundle_files": len(manifest["files"]),
            "operators": sum(len(ops) for ops in facts["operators"].values()),
            "minimum_onnxruntime": facts["minimum_onnxruntime"]}


def rows_for(bundle: Path, graph: str, clients: list[str]) -> list[dict[str, Any]]:
    """One row per client of this graph."""
    base = bundle_facts(bundle, graph)
    ours, prompts, expected = python_client(bundle, graph)
    rows = [{**base, "client": "onnxruntime (Python, onnxforge)", **ours, "same_ids": True}]
    for client in clients:
        if client == "genai":
            result = genai_result(bundle, TOKENS, prompts)
            name = "onnxruntime-genai (its runtime)"
        elif client == "transformers.js":
            result = run_client("transformers-js.mjs", str(bundle), WEB_DTYPES[graph], str(TOKENS), *PROMPTS)
            name = "transformers.js (Node)"
        else:
            result = run_client("ort-client.mjs", client, str(bundle), graph, str(TOKENS),
                                *(json.dumps(p) for p in prompts))
            name = {"node": "onnxruntime-node", "wasm": "onnxruntime-web WASM (Node)"}[client]
        ids = [row["token_ids"] for row in result["results"]]
        rows.append({**base, "client": name, "load_s": result["load_s"], "tokens_per_s": result["tokens_per_s"],
                     "same_ids": ids == expected})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    columns = ["bundle", "graph", "client", "graph_mib", "operators", "minimum_onnxruntime", "load_s",
               "tokens_per_s", "same_ids"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else ("–" if row[c] is None else str(row[c]))
                 for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure the bundles given; write bundles.json and bundles.md under --out."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--web", type=Path, help="a web bundle of the fp32 export and int4")
    parser.add_argument("--web-fused", type=Path, help="a web bundle of the fused folder")
    parser.add_argument("--mobile", type=Path)
    parser.add_argument("--genai", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    web_clients = ["transformers.js", "node", "wasm"]
    rows = []
    for bundle in (args.web, args.web_fused):
        if bundle:
            for graph in json.loads((bundle / "manifest.json").read_text())["parity"]:
                rows += rows_for(bundle, graph, web_clients)
    if args.mobile:
        rows += rows_for(args.mobile, "model.ort", [])
    if args.genai:
        rows += rows_for(args.genai, "model.onnx", ["genai"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bundles.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "bundles.md").write_text(markdown(rows))


if __name__ == "__main__":
    main()
