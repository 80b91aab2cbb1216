"""`onnxforge bundle DIR... OUT --target T`: a folder for one consumer, checked, with its manifest.

The bundle is written all or nothing (a staged folder renamed at the end). Every graph in it is
run in ONNX Runtime against the folder it came from (greedy tokens identical, logits compared),
and manifest.json records files, operators, the oldest ONNX Runtime that loads each graph, I/O,
KV layout, quantisation and those parity figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxforge.bundle.genai import write_genai
from onnxforge.bundle.layouts import WEB_RUNTIME, write_mobile, write_server, write_web
from onnxforge.bundle.manifest import build_manifest, write_bundle_manifest
from onnxforge.bundle.parity import graph_parity
from onnxforge.errors import BadInput
from onnxforge.folder import TOKENIZER_FILE, check_folder, read_manifest
from onnxforge.passes.runtime_versions import parse_version
from onnxforge.progress import Steps
from onnxforge.staging import staged_folder

TARGETS = ("web", "mobile", "genai", "server")
MOBILE_OPTIMIZATIONS = ("fixed", "runtime")


@dataclass(frozen=True)
class BundleRequest:
    """Which folders go into which target's bundle at OUT."""

    folders: tuple[Path, ...]
    out: Path
    target: str
    runtime: str | None = None
    mobile_optimization: str = "fixed"
    force: bool = False

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise BadInput(f"unknown target '{self.target}': choose from {', '.join(TARGETS)}")
        if self.target != "web" and len(self.folders) != 1:
            raise BadInput(f"the {self.target} target bundles one folder, got {len(self.folders)}: "
                           "only --target web carries several dtypes")
        if self.mobile_optimization not in MOBILE_OPTIMIZATIONS:
            raise BadInput(f"unknown mobile optimisation '{self.mobile_optimization}': choose fixed or runtime")
        if self.runtime is not None and self.target == "mobile":
            raise BadInput("--runtime does not apply to --target mobile: an ORT-format file needs the release that "
                           "wrote it or a later one")
        if self.runtime is not None:
            try:
                parse_version(self.runtime)
            except ValueError as error:
                raise BadInput(f"--runtime: {error}") from None


def bundle(request: BundleRequest) -> dict[str, Any]:
    """Write the bundle; return its manifest."""
    for folder in request.folders:
        check_folder(folder)
        if folder.resolve() == request.out.resolve():
            raise BadInput("OUT must differ from every DIR: bundle writes a new folder")
        if not (folder / TOKENIZER_FILE).is_file():
            raise BadInput(f"'{folder}' has no {TOKENIZER_FILE}: every bundle carries the tokenizer; re-export it")
    _check_same_model(request.folders)
    steps = Steps()
    with staged_folder(request.out, request.force) as stage:
        with steps.step("write", f"write the {request.target} bundle"):
            graphs = _write(request, stage)
        parity = {}
        for graph, source in graphs:
            with steps.step(f"check {graph}", f"check {graph} against {source} (greedy tokens, logits)"):
                parity[graph] = graph_parity(source, stage, graph)
        with steps.step("manifest", "hash the files and write manifest.json"):
            sources = {graph: _source_record(source) for graph, source in graphs}
            manifest = build_manifest(stage, request.target, [graph for graph, _ in graphs], sources,
                                      {"parity": parity})
            write_bundle_manifest(stage, manifest)
    return manifest


def _write(request: BundleRequest, stage: Path) -> list[tuple[str, Path]]:
    folder, runtime = request.folders[0], parse_version(request.runtime) if request.runtime else None
    if request.target == "web":
        return write_web(list(request.folders), stage, runtime or WEB_RUNTIME)
    if request.target == "mobile":
        return write_mobile(folder, stage, request.mobile_optimization, runtime)
    if request.target == "genai":
        return write_genai(folder, stage, runtime)
    return write_server(folder, stage, runtime)


def _check_same_model(folders: tuple[Path, ...]) -> None:
    """Several folders in one bundle must be the same model: same tokenizer, source, architecture and structural
    passes (only fusion and quantisation may differ between dtypes)."""
    first = folders[0]
    for other in folders[1:]:
        same_tokenizer = (first / TOKENIZER_FILE).read_bytes() == (other / TOKENIZER_FILE).read_bytes()
        if not same_tokenizer or _model_identity(first) != _model_identity(other):
            raise BadInput(f"'{other}' is not the same model as '{first}' (tokenizer, source, architecture or "
                           "structural passes differ): a bundle carries dtypes of one model")


# what makes another model, not another dtype (the structural passes and distill; bundle/ may not import models/)
WEIGHT_CHANGING_PASSES = ("prune-ffn", "prune-heads", "drop-layers", "sparsify", "lowrank", "distill")


def _model_identity(folder: Path) -> tuple[Any, ...]:
    record = read_manifest(folder)
    changed = [entry.get("pass") for entry in record.get("passes", []) if entry.get("pass") in WEIGHT_CHANGING_PASSES]
    return record.get("source"), record.get("architecture"), changed


def _source_record(folder: Path) -> dict[str, Any]:
    """What the manifest keeps of a source folder's onnxforge.json: origin, passes and export parity."""
    record = read_manifest(folder)
    return {"folder": folder.name, "source": record.get("source"), "architecture": record.get("architecture"),
            "passes": [entry.get("pass") for entry in record.get("passes", [])],
            "export_parity_worst_abs_logits_diff": (record.get("parity") or {}).get("worst_abs_logits_diff"),
            "onnxruntime_used": record.get("versions", {}).get("onnxruntime")}
