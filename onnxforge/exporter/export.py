"""`onnxforge export SOURCE OUT`: load, trace, clean up, write the folder, check parity, rename."""

from __future__ import annotations

import platform
import resource
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxforge import __version__
from onnxforge.errors import BadInput, ParityError
from onnxforge.exporter.defaults import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from onnxforge.exporter.encoder import encoder_parity, trace_encoder
from onnxforge.exporter.hf_files import write_hf_files
from onnxforge.exporter.trace import trace_to_onnx
from onnxforge.exporter.validate import check_parity
from onnxforge.folder import EXTERNAL_DATA_FILE, MODEL_FILE, folder_bytes, write_manifest
from onnxforge.models import LoadedModel, load_source
from onnxforge.models.encoders import LoadedEncoder, is_encoder_source, load_encoder
from onnxforge.progress import Steps
from onnxforge.staging import check_output, staged_folder

_VERSIONED = ("torch", "transformers", "onnx", "onnx-ir", "onnxscript", "onnxruntime")


def export_model(
    source: str, out: Path, opset: int = DEFAULT_OPSET, force: bool = False, validate: bool = True
) -> dict[str, Any]:
    """Export SOURCE to the folder OUT (all or nothing) and return its manifest."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadInput(f"--opset {opset} is not supported: choose {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})")
    check_output(out, force)
    if is_encoder_source(source):
        return export_encoder(source, out, opset, force, validate)
    steps, start = Steps(), time.perf_counter()
    with steps.step("load", f"load {source}"):
        loaded = load_source(source)
    with staged_folder(out, force) as stage:
        with steps.step("trace", "trace with torch.onnx (dynamo) and clean up"):
            model = trace_to_onnx(loaded.model, loaded.facts, opset)
        with steps.step("save", "write model.onnx, external data, config and tokenizer"):
            ir.save(model, stage / MODEL_FILE, external_data=EXTERNAL_DATA_FILE)
            write_hf_files(stage, loaded)
        manifest = _manifest(loaded, model)
        manifest["export_seconds"] = round(time.perf_counter() - start, 2)
        if validate:
            with steps.step("validate", "check parity with torch (logits and greedy tokens)"):
                manifest["parity"] = check_parity(stage, loaded)
        manifest["steps_seconds"] = steps.seconds
        manifest["peak_rss_bytes"] = peak_rss_bytes()
        manifest["files_bytes"] = folder_bytes(stage)  # the files beside onnxforge.json
        write_manifest(stage, manifest)
        if validate and not manifest["parity"]["passed"]:
            raise ParityError(_parity_failure(manifest["parity"]))
    return manifest


def export_encoder(source: str, out: Path, opset: int, force: bool, validate: bool) -> dict[str, Any]:
    """Export an encoder SOURCE as a feature-extraction folder (exporter/encoder.py) and return its manifest."""
    steps, start = Steps(), time.perf_counter()
    with steps.step("load", f"load {source}"):
        loaded = load_encoder(source)
    with staged_folder(out, force) as stage:
        with steps.step("trace", "trace the encoder and its pooling with torch.onnx (dynamo)"):
            model = trace_encoder(loaded, opset)
        with steps.step("save", "write model.onnx, external data, config and tokenizer"):
            ir.save(model, stage / MODEL_FILE, external_data=EXTERNAL_DATA_FILE)
            loaded.model.config.save_pretrained(stage)
            loaded.tokenizer.save_pretrained(stage)
        manifest = _manifest(loaded, model)
        manifest["export_seconds"] = round(time.perf_counter() - start, 2)
        if validate:
            with steps.step("validate", "check parity with torch (hidden states, sentence embeddings)"):
                manifest["parity"] = encoder_parity(str(stage / MODEL_FILE), loaded)
        manifest["steps_seconds"] = steps.seconds
        manifest["peak_rss_bytes"] = peak_rss_bytes()
        manifest["files_bytes"] = folder_bytes(stage)
        write_manifest(stage, manifest)
        if validate and not manifest["parity"]["passed"]:
            parity = manifest["parity"]
            raise ParityError(f"parity with torch failed (embedding cosine {parity['min_embedding_cosine']:.6f}, "
                              f"hidden |Δ| {parity['max_abs_hidden_diff']:.2e}), so nothing was written; "
                              "--no-validate keeps the folder anyway")
    return manifest


def _manifest(loaded: LoadedModel | LoadedEncoder, model: ir.Model) -> dict[str, Any]:
    weights = list(model.graph.initializers.values())
    return {
        "onnxforge_version": __version__,
        "source": {"name": loaded.source, "kind": loaded.kind},
        "architecture": loaded.facts.to_json(),
        "opset": model.opset_imports[""],
        "nodes": model.graph.num_nodes(),
        "parameters": int(sum(w.const_value.size for w in weights if w.const_value is not None)),
        "versions": {name: metadata.version(name) for name in _VERSIONED} | {"python": platform.python_version()},
        "passes": [],
    }


def _parity_failure(parity: dict[str, Any]) -> str:
    tolerance = parity["tolerance"]
    failed = [f"{case} {diff:.2e}" for case, diff in parity.get("max_abs_logits_diff", {}).items()
              if not diff <= tolerance]
    where = f" in {', '.join(failed)}" if failed else ""
    return (
        f"parity with torch failed (worst |Δ logits| {parity['worst_abs_logits_diff']:.2e}{where}, tolerance "
        f"{tolerance:.0e}; greedy identical {parity['greedy_identical']}; tokenizer identical "
        f"{parity['tokenizer_identical']}), so nothing was written; --no-validate keeps the folder anyway"
    )


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
