"""`onnxforge compress IN OUT --recipe R`: load once, run the recipe's passes, check, save once.

The output folder is built beside OUT and renamed at the end (nothing half-written on failure).
It holds the compressed model.onnx (+ external data), the input's tokenizer and generation
files, config.json updated to the new shape (layers, heads), and onnxforge.json with every pass's
record appended to the input's history.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from onnxforge.errors import BadInput
from onnxforge.folder import (
    CONFIG_FILE,
    EXTERNAL_DATA_FILE,
    FACTS_KEY,
    LOGITS,
    MODEL_FILE,
    MODEL_FILES,
    MS_DOMAIN,
    SENTENCE_EMBEDDING,
    check_folder,
    folder_bytes,
    read_manifest,
    write_manifest,
)
from onnxforge.passes.base import (
    model_facts,
    nonzero_count,
    open_pass_log,
    parameter_count,
    set_model_facts,
    take_pass_log,
)
from onnxforge.passes.calibration import Calibration, CalibrationSettings, calibration_feeds
from onnxforge.passes.recipe import Recipe
from onnxforge.passes.registry import make_pass, needs_calibration
from onnxforge.progress import Steps
from onnxforge.staging import check_output, staged_folder

_SANITY_TOKENS = 48
_ORT_OPS_IN_DEFAULT_DOMAIN = ("SimplifiedLayerNormalization",)
_ORT_FLOAT = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def compress(
    source: Path, out: Path, recipe: Recipe, calibration: CalibrationSettings, force: bool = False
) -> dict[str, Any]:
    """Apply `recipe` to the folder `source`, write the folder `out`, and return its manifest."""
    check_folder(source)
    if out.resolve() == source.resolve():
        raise BadInput("OUT must differ from IN: compress writes a new folder")
    check_output(out, force)
    steps, start, manifest = Steps(), time.perf_counter(), read_manifest(source)
    if "architecture" not in manifest:
        raise BadInput(f"{source}/onnxforge.json has no architecture facts: re-export the model with onnxforge export")
    with steps.step("load", f"load {source / MODEL_FILE}"):
        model = ir.external_data.load_to_model(ir.load(source / MODEL_FILE))  # in memory: passes rewrite weights
    set_model_facts(model, manifest["architecture"])
    open_pass_log(model)
    shared = _calibration(recipe, source, calibration)
    for number, step in enumerate(recipe.steps, start=1):
        with steps.step(f"{number}:{step.name}", f"pass {number}/{len(recipe.steps)}: {step.name}"):
            try:
                make_pass(step.name, step.config, shared)(model)
            except BadInput as error:
                raise BadInput(f"pass {number} ({step.name}): {error}") from None
    records, facts = take_pass_log(model), model_facts(model)
    del model.metadata_props[FACTS_KEY]
    with staged_folder(out, force) as stage:
        with steps.step("save", "write model.onnx and external data, check it"):
            copy_side_files(source, stage, facts)
            ir.save(model, stage / MODEL_FILE, external_data=EXTERNAL_DATA_FILE)
            check_onnx(stage / MODEL_FILE)
        with steps.step("sanity", "sanity run against the input model"):
            sanity = sanity_check(source, stage)
        manifest = _updated_manifest(manifest, model, facts, recipe, records, shared)
        manifest.update(
            sanity=sanity, compress_seconds=round(time.perf_counter() - start, 2), compress_steps_seconds=steps.seconds
        )
        manifest["files_bytes"] = folder_bytes(stage)
        write_manifest(stage, manifest)
    return manifest


def _calibration(recipe: Recipe, source: Path, settings: CalibrationSettings) -> Calibration | None:
    """The shared calibration rows, only when a pass of the recipe needs them (recipe values first)."""
    if not any(needs_calibration(step.name) for step in recipe.steps):
        return None
    merged = CalibrationSettings(**{**settings.__dict__, **recipe.calibration})
    return Calibration.from_folder(source, merged)


def copy_side_files(source: Path, stage: Path, facts: dict[str, Any]) -> None:
    """Tokenizer, generation config and config.json (with the new shape) next to the new model."""
    for path in source.iterdir():
        if path.is_file() and path.name not in MODEL_FILES:
            shutil.copy2(path, stage / path.name)
    config_file = stage / CONFIG_FILE
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config.update(config_shape(config, facts))
        config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def config_shape(config: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The transformers config keys a reader needs to build the KV cache of the compressed graph."""
    keys = {
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
        "num_key_value_heads": "num_kv_heads",
    }
    shape = {key: facts[fact] for key, fact in keys.items() if key in config and fact in facts}
    if "num_attention_heads" in config and "head_dim" in facts:
        shape["head_dim"] = facts["head_dim"]  # explicit: hidden_size / heads no longer gives it after head pruning
    return shape


def _updated_manifest(
    manifest: dict[str, Any],
    model: ir.Model,
    facts: dict[str, Any],
    recipe: Recipe,
    records: list[dict[str, Any]],
    calibration: Calibration | None,
) -> dict[str, Any]:
    manifest = dict(manifest)
    manifest.pop("parity", None)  # parity was measured on the exported graph, not this one
    manifest["architecture"] = facts
    manifest["nodes"] = model.graph.num_nodes()
    manifest["parameters"] = parameter_count(model)
    manifest["nonzero_parameters"] = nonzero_count(model)
    manifest["passes"] = list(manifest.get("passes", [])) + records
    manifest["recipes"] = list(manifest.get("recipes", [])) + [
        {**recipe.to_json(), "calibration": calibration.to_json() if calibration else None}
    ]
    return manifest


def check_onnx(path: Path) -> None:
    """onnx.checker on the saved model; ONNX Runtime's contrib ops that live in the default domain
    (SimplifiedLayerNormalization) are checked as the contrib ops they are."""
    model = onnx.load(path, load_external_data=False)
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in _ORT_OPS_IN_DEFAULT_DOMAIN:
            node.domain = MS_DOMAIN
    if not any(opset.domain == MS_DOMAIN for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))
    checked = path.with_name(".checked-" + path.name)  # beside the external data it refers to
    onnx.save(model, checked)
    try:
        onnx.checker.check_model(str(checked))
    finally:
        checked.unlink()


def sanity_check(source: Path, out: Path) -> dict[str, Any]:
    """Run a short text through both models: outputs must be finite; report top-1 agreement (an encoder: the
    cosine of the two sentence embeddings)."""
    ids = _sanity_ids(source)
    outputs = [_output(folder, ids) for folder in (source, out)]
    if not np.isfinite(outputs[1]).all():
        raise RuntimeError("the compressed model produces non-finite outputs: a pass broke it")
    if outputs[0].ndim == 1:  # a sentence embedding
        cosine = float(outputs[0] @ outputs[1] / np.linalg.norm(outputs[0]) / np.linalg.norm(outputs[1]))
        return {"tokens": int(ids.shape[1]), "embedding_cosine": round(cosine, 6)}
    agreement = float((outputs[0].argmax(-1) == outputs[1].argmax(-1)).mean())
    return {
        "tokens": int(ids.shape[1]),
        "top1_agreement": round(agreement, 4),
        "max_abs_logits_diff": float(np.abs(outputs[0] - outputs[1]).max()),
    }


def _sanity_ids(source: Path) -> np.ndarray:
    calibration = Calibration.from_folder(source, CalibrationSettings(samples=1, max_tokens=_SANITY_TOKENS))
    return calibration.rows[0][None].astype(np.int64)


def _output(folder: Path, ids: np.ndarray) -> np.ndarray:
    """float32 logits [seq, vocab] of one unpadded row with an empty past (an encoder: its sentence embedding
    [hidden]), straight through ONNX Runtime."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.shape, _ORT_FLOAT.get(i.type, np.int64)) for i in session.get_inputs()]
    outputs = {value.name for value in session.get_outputs()}
    name = SENTENCE_EMBEDDING if SENTENCE_EMBEDDING in outputs else LOGITS
    [values] = session.run([name], calibration_feeds(inputs, ids[0]))
    return values[0].astype(np.float32)
