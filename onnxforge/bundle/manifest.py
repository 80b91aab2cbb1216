"""A bundle's manifest.json: what a program in any language needs to know before it loads the graphs.

Files with their sha256; per graph the opset imports, the operators per domain, the oldest ONNX
Runtime release that loads it (and what decides that), its inputs and outputs (dtype and
dimension names), the KV-cache layout and the weight quantisation found in it; plus the parity
figures of the folders it came from. `verify` recomputes all of it from the files and lists what
differs.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import onnx_ir as ir
import onnxruntime as ort

from onnxforge.errors import BadInput
from onnxforge.folder import (
    BUNDLE_MANIFEST_FILE,
    KV_CACHE_KEY,
    PAST_PREFIX,
    PRESENT_PREFIX,
    REQUIRED_OPERATORS_FILE,
    SHARED_BUFFER,
)
from onnxforge.passes.runtime_versions import minimum_version, parse_version, unknown_ops, version_text

MANIFEST_VERSION = 1
ORT_FORMAT_SUFFIX = ".ort"
QUANTIZED_OPS = ("MatMulNBits", "GatherBlockQuantized", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                 "QuantizeLinear", "DequantizeLinear")


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 8 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while piece := stream.read(8 << 20):
            digest.update(piece)
    return digest.hexdigest()


def file_entries(root: Path) -> list[dict[str, Any]]:
    """Every file under root but the manifest: path (POSIX, relative), bytes and sha256."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != BUNDLE_MANIFEST_FILE)
    return [{"path": p.relative_to(root).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in files]


def graph_facts(root: Path, relative: str) -> dict[str, Any]:
    """What a consumer must support to run the graph at `root / relative` (its weights are not read)."""
    if relative.endswith(ORT_FORMAT_SUFFIX):
        return ort_format_facts(root, relative)
    model = ir.load(root / relative)
    version, deciding = minimum_version(model)
    operators: dict[str, Counter] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        operators.setdefault(node.domain or "ai.onnx", Counter())[node.op_type] += 1
    return {
        "path": relative,
        "ir_version": model.ir_version,
        "opset_imports": {domain or "ai.onnx": int(v) for domain, v in sorted(model.opset_imports.items())},
        "operators": {domain: dict(sorted(ops.items())) for domain, ops in sorted(operators.items())},
        "minimum_onnxruntime": version_text(version),
        "minimum_onnxruntime_for": [r.to_json() for r in deciding[:8]],
        "unknown_contrib_ops": unknown_ops(model),
        "inputs": [_io(value) for value in model.graph.inputs if not value.is_initializer()],
        "optional_inputs": [_io(value) for value in model.graph.inputs if value.is_initializer()],
        "outputs": [_io(value) for value in model.graph.outputs],
        "kv_cache": _kv_cache(model),
        "quantization": _quantization(model, operators),
    }


def ort_format_facts(root: Path, relative: str) -> dict[str, Any]:
    """The same facts for an ORT-format graph: operators from required_operators.config, I/O from a session.

    An ORT-format file is read by the release that wrote it and later ones, so that release is its minimum.
    """
    session = ort.InferenceSession(str(root / relative), providers=["CPUExecutionProvider"])
    operators = _required_operators(root / REQUIRED_OPERATORS_FILE)
    inputs = [_session_io(value) for value in session.get_inputs()]
    pasts = [value for value in inputs if value["name"].startswith(PAST_PREFIX)]
    written = version_text(parse_version(ort.__version__))
    return {
        "path": relative,
        "format": "ort",
        "operators": operators,
        "minimum_onnxruntime": written,
        "minimum_onnxruntime_for": [{"onnxruntime": written, "for": "ORT format written by this release"}],
        "inputs": inputs,
        "outputs": [_session_io(value) for value in session.get_outputs()],
        "kv_cache": {"layers": len(pasts) // 2, "dtype": pasts[0]["dtype"], "shape": pasts[0]["shape"]}
        if pasts else None,
        "quantization": {"operators": {op: 1 for ops in operators.values() for op in ops if op in QUANTIZED_OPS}},
    }


def _required_operators(config: Path) -> dict[str, list[str]]:
    """{domain: [ops]} from a required_operators.config ('domain;opset;Op1,Op2' lines)."""
    operators: dict[str, list[str]] = {}
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            domain, opset, ops = line.split(";")
            operators[f"{domain} {opset}"] = sorted(ops.split(","))
    return operators


def _session_io(value: Any) -> dict[str, Any]:
    dtype = value.type.removeprefix("tensor(").removesuffix(")")
    return {"name": value.name, "dtype": dtype, "shape": [d if isinstance(d, int) else str(d) for d in value.shape]}


def _io(value: ir.Value) -> dict[str, Any]:
    dims = [] if value.shape is None else [d if isinstance(d, int) else str(d) for d in value.shape.dims]
    return {"name": value.name, "dtype": value.dtype.name.lower() if value.dtype else None, "shape": dims}


def _kv_cache(model: ir.Model) -> dict[str, Any] | None:
    pasts = [v for v in model.graph.inputs if v.name.startswith(PAST_PREFIX)]
    if not pasts:
        return None
    first = _io(pasts[0])
    return {
        "layers": len(pasts) // 2,
        "inputs": f"{PAST_PREFIX}{{layer}}.{{key|value}}",
        "outputs": f"{PRESENT_PREFIX}{{layer}}.{{key|value}}",
        "dtype": first["dtype"],
        "shape": first["shape"],
        "shared_buffer": model.metadata_props.get(KV_CACHE_KEY) == SHARED_BUFFER,
    }


def _quantization(model: ir.Model, operators: dict[str, Counter]) -> dict[str, Any]:
    found = {op: count for ops in operators.values() for op, count in ops.items() if op in QUANTIZED_OPS}
    schemes = Counter()
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type in ("MatMulNBits", "GatherBlockQuantized"):
            bits, block = node.attributes.get_int("bits", 4), node.attributes.get_int("block_size", 0)
            schemes[f"{node.op_type} {bits}-bit, blocks of {block}"] += 1
    return {"operators": found, "schemes": dict(schemes)} if found else {}


def build_manifest(root: Path, target: str, graphs: list[str], sources: dict[str, dict[str, Any]],
                   notes: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the bundle at root (graphs relative to it; `sources`: each graph's folder record)."""
    facts = [graph_facts(root, graph) for graph in graphs]
    newest = max((tuple(int(p) for p in f["minimum_onnxruntime"].split(".")) for f in facts), default=(1, 16))
    return {
        "manifest_version": MANIFEST_VERSION,
        "target": target,
        "minimum_onnxruntime": version_text(newest),
        "graphs": facts,
        "sources": sources,
        **notes,
        "files": file_entries(root),
    }


def write_bundle_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json at the bundle's root."""
    (root / BUNDLE_MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def read_bundle_manifest(root: Path) -> dict[str, Any]:
    """The bundle's manifest; BadInput when the folder has none or it is not JSON."""
    path = root / BUNDLE_MANIFEST_FILE
    if not path.is_file():
        raise BadInput(f"'{root}' has no {BUNDLE_MANIFEST_FILE}: it is not a bundle (write one with onnxforge bundle)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BadInput(f"{path} is not valid JSON ({error.msg} at line {error.lineno}): rebuild the bundle") from None


def verify(root: Path) -> list[str]:
    """What in the bundle differs from its manifest (files, digests, graph facts); empty when it all matches.

    Graph facts are recomputed only when every file matches (a changed file is already a problem); an
    ORT-format graph keeps its recorded minimum release (the one that wrote it, not the one reading it).
    """
    manifest = read_bundle_manifest(root)
    recorded = {entry["path"]: entry for entry in manifest.get("files", [])}
    present = {entry["path"]: entry for entry in file_entries(root)}
    problems = [f"{path}: listed in the manifest but missing" for path in sorted(recorded.keys() - present.keys())]
    problems += [f"{path}: present but not in the manifest" for path in sorted(present.keys() - recorded.keys())]
    problems += [f"{path}: sha256 differs from the manifest" for path in sorted(recorded.keys() & present.keys())
                 if recorded[path]["sha256"] != present[path]["sha256"]]
    if problems:
        return problems
    for graph in manifest.get("graphs", []):
        problems += _graph_problems(root, graph)
    return problems


def _graph_problems(root: Path, graph: dict[str, Any]) -> list[str]:
    """The facts of one recorded graph that its file no longer gives."""
    try:
        now = graph_facts(root, graph["path"])
    except Exception as error:  # noqa: BLE001 - any unreadable graph is a finding, not a crash
        return [f"{graph.get('path')}: cannot be read ({type(error).__name__}: {error})"]
    if now.get("format") == "ort":
        now = {key: value for key, value in now.items() if not key.startswith("minimum_onnxruntime")}
    return [f"{graph['path']}: {key} differs from the manifest" for key in now if now[key] != graph.get(key)]
