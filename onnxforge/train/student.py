"""The torch student: the teacher's architecture reshaped to a compressed folder, holding that folder's weights.

A structurally compressed folder (prune-ffn, prune-heads, drop-layers, lowrank, sparsify) keeps
the Hugging Face weight names the exporter gave it, so the student is the teacher's transformers
class built from the folder's shape (layers, heads) with every projection resized to its stored
weight: pruned widths may differ per layer, a factorised projection becomes two thin ones
(`LowRankLinear`, whose parameters export under the names the lowrank pass wrote). A MatMul
weight is stored [in, out] and becomes a Linear's [out, in]; whatever else (norms, a tied
embedding read by a Gather) is stored as torch holds it. The rebuilt student is checked against
the folder's own graph in ONNX Runtime before anything trains on it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import torch

from onnxforge.errors import BadInput
from onnxforge.folder import MODEL_FILE, check_folder, read_manifest
from onnxforge.models import LoadedModel
from onnxforge.models.architectures import STRUCTURAL_PASSES
from onnxforge.models.encoders import LoadedEncoder
from onnxforge.passes.pipeline import config_shape

STRUCTURAL_STEPS = ("cleanup", *STRUCTURAL_PASSES, "distill")
_SHAPE_FACTS = ("model_type", "hidden_size", "vocab_size", "head_dim")
REBUILD_TOLERANCE = 1e-3  # |Δ logits| allowed between the rebuilt student and its folder


class LowRankLinear(torch.nn.Module):
    """x·A·B (+ bias): a projection the lowrank pass factorised, A [in, r] and B [r, out] as stored."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.lowrank_a = torch.nn.Parameter(a)
        self.lowrank_b = torch.nn.Parameter(b)
        self.bias = None if bias is None else torch.nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.lowrank_a @ self.lowrank_b
        return out if self.bias is None else out + self.bias


@dataclass
class Student:
    """The torch student, which teacher layer each of its layers came from, and its sparsity masks."""

    model: torch.nn.Module
    teacher_layers: list[int]
    masks: dict[str, torch.Tensor]
    manifest: dict[str, Any]

    def keep_sparsity(self) -> None:
        """Put back the zeros of a sparsified student (after an optimiser step moved them)."""
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, mask in self.masks.items():
                parameters[name].mul_(mask)


def load_student(folder: Path, teacher: LoadedModel | LoadedEncoder) -> Student:
    """Rebuild the compressed folder as a torch model of the teacher's class; BadInput if it is not the teacher's."""
    manifest = read_student_manifest(folder)
    check_derived(manifest, teacher, folder)
    dropped = dropped_layers(manifest)
    config = _student_config(teacher.model.config, manifest["architecture"], dropped[1])
    torch.manual_seed(0)  # the initial weights are all replaced; seeded so that nothing depends on chance
    model = _new_model(teacher.model, config)
    weights = _stored_weights(folder)
    _resize_projections(model, weights)
    _load_weights(model, weights, _teacher_parameters(teacher.model, dropped[0]), folder)
    masks = _sparsity_masks(model) if _ran(manifest, "sparsify") else {}
    return Student(model, dropped[0], masks, manifest)


def _new_model(teacher: torch.nn.Module, config: Any) -> torch.nn.Module:
    """A model of the teacher's class for `config` (an encoder loaded without its pooler is built without one)."""
    extra = {"add_pooling_layer": False} if getattr(teacher, "pooler", "none") is None else {}
    return type(teacher)(config, **extra).eval()


def read_student_manifest(folder: Path) -> dict[str, Any]:
    """The student folder's onnxforge.json; BadInput when the folder is not an onnxforge model folder."""
    check_folder(folder)
    return read_manifest(folder)


def stream_weight_default(manifest: dict[str, Any]) -> float:
    """1 (match the hidden states too) where layers were dropped or projections factorised, else 0."""
    return 1.0 if _ran(manifest, "drop-layers") or _ran(manifest, "lowrank") else 0.0


def check_derived(manifest: dict[str, Any], teacher: LoadedModel | LoadedEncoder, folder: Path) -> None:
    """Refuse a student whose architecture, vocabulary or width is not the teacher's, or that was fused or quantised."""
    facts, teacher_facts = manifest.get("architecture", {}), teacher.facts.to_json()
    differs = [f"{key} {facts.get(key)} vs {teacher_facts.get(key)}" for key in _SHAPE_FACTS
               if facts.get(key) != teacher_facts.get(key)]
    if differs:
        raise BadInput(f"the student '{folder}' is not derived from the teacher {teacher.source} "
                       f"({'; '.join(differs)}): compress a folder exported from the teacher")
    later = [step["pass"] for step in manifest.get("passes", []) if step.get("pass") not in STRUCTURAL_STEPS]
    if later:
        raise BadInput(f"the student '{folder}' ran {', '.join(later)}: distil a folder of structural passes only "
                       f"({', '.join(STRUCTURAL_STEPS[1:-1])}), then fuse or quantise the distilled folder")


def dropped_layers(manifest: dict[str, Any]) -> tuple[list[int], list[int]]:
    """(teacher layer of each student layer, teacher layers dropped), composed over every drop-layers step."""
    teacher_count = manifest["architecture"]["num_layers"] + sum(
        len(step["layers_dropped"]) for step in manifest.get("passes", []) if step.get("pass") == "drop-layers")
    kept = list(range(teacher_count))
    for step in manifest.get("passes", []):
        if step.get("pass") == "drop-layers":
            kept = [layer for i, layer in enumerate(kept) if i not in set(step["layers_dropped"])]
    return kept, sorted(set(range(teacher_count)) - set(kept))


def _ran(manifest: dict[str, Any], name: str) -> bool:
    return any(step.get("pass") == name for step in manifest.get("passes", []))


def _student_config(teacher_config: Any, facts: dict[str, Any], dropped: list[int]) -> Any:
    config = copy.deepcopy(teacher_config)
    config.update(config_shape(config.to_dict(), facts))  # the shape keys compress writes into config.json
    for key in ("layer_types", "no_rope_layers"):
        values = getattr(config, key, None)
        if isinstance(values, list) and len(values) == facts["num_layers"] + len(dropped):
            setattr(config, key, [v for i, v in enumerate(values) if i not in set(dropped)])
    return config


def _stored_weights(folder: Path) -> dict[str, tuple[np.ndarray, bool]]:
    """Every initializer as (array, stored [in, out] for a MatMul), by name."""
    graph = ir.load(folder / MODEL_FILE).graph
    return {
        name: (value.const_value.numpy(), _is_matmul_weight(value))
        for name, value in graph.initializers.items()
        if value.const_value is not None
    }


def _is_matmul_weight(value: ir.Value) -> bool:
    uses = list(value.uses())
    return bool(uses) and all(use.node.op_type == "MatMul" and use.idx == 1 for use in uses)


def _resize_projections(model: torch.nn.Module, weights: dict[str, tuple[np.ndarray, bool]]) -> None:
    """Give every Linear the shape of its stored weight, or two thin Linears where it was factorised."""
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear):
            continue
        bias = weights.get(f"{name}.bias")
        bias_tensor = None if bias is None else torch.from_numpy(bias[0].copy())
        if f"{name}.lowrank_a" in weights:
            a, b = (torch.from_numpy(weights[f"{name}.lowrank_{part}"][0].copy()) for part in "ab")
            _replace_module(model, name, LowRankLinear(a, b, bias_tensor))
        elif f"{name}.weight" in weights:
            array, transposed = weights[f"{name}.weight"]
            out_features, in_features = array.shape[::-1] if transposed else array.shape
            if (out_features, in_features) != tuple(module.weight.shape):
                _replace_module(model, name, torch.nn.Linear(in_features, out_features, bias=module.bias is not None))


def _replace_module(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _teacher_parameters(teacher: torch.nn.Module, teacher_layers: list[int]) -> dict[str, torch.Tensor]:
    """The teacher's parameters under the student's names (student layer i is teacher layer teacher_layers[i])."""
    by_name = dict(teacher.named_parameters(remove_duplicate=False))
    renamed = {}
    for student_layer, teacher_layer in enumerate(teacher_layers):
        pattern = re.compile(rf"^(.*?\.){teacher_layer}(\..*)$")
        for name, parameter in by_name.items():
            match = pattern.match(name)
            if match and not re.search(r"\.\d+\.", match.group(1)):
                renamed[f"{match.group(1)}{student_layer}{match.group(2)}"] = parameter
    return {name: p for name, p in by_name.items() if not re.search(r"\.\d+\.", name)} | renamed


def _load_weights(
    model: torch.nn.Module,
    weights: dict[str, tuple[np.ndarray, bool]],
    teacher: dict[str, torch.Tensor],
    folder: Path,
) -> None:
    """Copy each stored weight into the parameter (or any tied alias of it) that has its name.

    A parameter the graph does not name (the exporter merges equal constants, such as norm weights
    that are all ones, into one initializer) keeps the teacher's value: the structural passes only
    rewrite projections, which the graph always names.
    """
    linear = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    aliases: dict[int, list[tuple[str, torch.nn.Parameter]]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(parameter), []).append((name, parameter))
    for group in aliases.values():
        stored = next((weights[name] for name, _ in group if name in weights), None)
        names = " / ".join(name for name, _ in group)
        if stored is None and group[0][0] in teacher:
            stored = (teacher[group[0][0]].detach().numpy(), False)
        if stored is None:
            raise BadInput(f"the student '{folder}' has no weight {names}: was it compressed from an onnxforge "
                           "export of the teacher?")
        array, matmul_weight = stored
        transposed = matmul_weight and any(name in linear for name, _ in group)  # Linear holds [out, in]
        tensor = torch.from_numpy((array.T if transposed else array).copy())
        parameter = group[0][1]
        if tuple(tensor.shape) != tuple(parameter.shape):
            raise BadInput(f"the student '{folder}' stores {names} as {list(tensor.shape)}, the teacher's "
                           f"architecture needs {list(parameter.shape)}: not a student of this teacher")
        with torch.no_grad():
            parameter.copy_(tensor.to(parameter.dtype))


def _sparsity_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """1 where a projection weight is non-zero, for every projection weight the sparsify pass thinned."""
    return {
        name: (parameter != 0).to(parameter.dtype)
        for name, parameter in model.named_parameters()
        if parameter.ndim == 2 and "embed" not in name and "lm_head" not in name and bool((parameter == 0).any())
    }


def rebuild_error(student: Student, folder: Path, ids: np.ndarray) -> float:
    """Max |Δ logits| between the torch student and the folder's graph in ONNX Runtime on one row of ids."""
    from onnxforge.runtime.decoder import Decoder

    decoder = Decoder(folder)
    row = ids[None, :].astype(np.int64)
    positions = np.arange(row.shape[1], dtype=np.int64)[None, :]
    expected = decoder.forward(row, np.ones_like(row), positions, decoder.empty_past(1))[0]
    with torch.no_grad():
        got = student.model(input_ids=torch.from_numpy(row)).logits.numpy()
    return float(np.abs(expected - got).max())
