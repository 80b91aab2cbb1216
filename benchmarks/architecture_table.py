"""Every named architecture on its tiny model: export, parity per probe, fuse, int4 — one Markdown table.

    .venv/bin/python benchmarks/architecture_table.py --work /tmp/arch [--out docs/architectures-run.md]

Per architecture: export seconds, graph nodes before and after `fuse` and the kernels it fused
(or why it refused), the worst |Δ logits| of each parity probe (the longest past included),
greedy tokens identical to transformers, fused greedy tokens identical to the export, and the
int4 folder's size against fp32.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from onnxforge.errors import BadInput
from onnxforge.exporter.export import export_model
from onnxforge.models.tiny import TINY_CONFIGS
from onnxforge.passes.calibration import CalibrationSettings
from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import load_recipe
from onnxforge.runtime.generate import GenerationSettings, Generator

CALIBRATION = CalibrationSettings(samples=4, max_tokens=32)


def greedy(folder: Path) -> list[int]:
    """32 greedy tokens of a fixed raw prompt through the runtime."""
    run = Generator(folder).generate(["The quick brown fox jumps over the lazy dog"], GenerationSettings(32), raw=True)
    return run.completions[0].token_ids


def measure(arch: str, work: Path) -> dict:
    """Export, fuse and quantise one tiny architecture; its row of figures."""
    start = time.perf_counter()
    manifest = export_model(f"tiny:{arch}", work / arch, force=True)
    row = {"arch": arch, "export_s": round(time.perf_counter() - start, 1), "nodes": manifest["nodes"],
           "parity": manifest["parity"]["max_abs_logits_diff"], "greedy": manifest["parity"]["greedy_identical"]}
    try:
        fused = compress(work / arch, work / f"{arch}-fuse", load_recipe("fuse"), CALIBRATION, force=True)
        row.update(fused_nodes=fused["nodes"], kernels=fused["passes"][-1]["fused"],
                   fused_greedy_identical=greedy(work / f"{arch}-fuse") == greedy(work / arch))
    except BadInput as refused:
        row.update(fused_nodes=None, kernels=str(refused).split(": ", 1)[-1][:80], fused_greedy_identical=None)
    int4 = compress(work / arch, work / f"{arch}-int4", load_recipe("int4"), CALIBRATION, force=True)
    row["int4_size_ratio"] = round(int4["files_bytes"]["total"] / manifest["files_bytes"]["total"], 3)
    return row


def markdown(rows: list[dict]) -> str:
    """The table, one row per architecture."""
    lines = ["| architecture | export s | nodes | fused nodes | fused kernels (or refusal) | worst \\|Δ logits\\| "
             "(probe) | longest-past probe | greedy = transformers | fused greedy = export | int4 / fp32 size |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        worst = max(row["parity"], key=row["parity"].get)
        longest = max((k for k in row["parity"] if k.startswith("decode_after_past_")),
                      key=lambda k: int(k.rsplit("_", 1)[1]))
        kernels = row["kernels"] if isinstance(row["kernels"], str) else ", ".join(
            f"{op} {n}" for op, n in sorted(row["kernels"].items())) or "none matched"
        fused_same = {True: "yes", False: "NO", None: "-"}[row["fused_greedy_identical"]]
        lines.append(f"| {row['arch']} | {row['export_s']} | {row['nodes']} | {row['fused_nodes'] or '-'} | "
                     f"{kernels} | {row['parity'][worst]:.1e} ({worst}) | {row['parity'][longest]:.1e} ({longest}) | "
                     f"{row['greedy']} | {fused_same} | {row['int4_size_ratio']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the exports")
    parser.add_argument("--out", type=Path, help="write the Markdown table here (and .json beside it)")
    args = parser.parse_args()
    rows = [measure(arch, args.work) for arch in TINY_CONFIGS]
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
