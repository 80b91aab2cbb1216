"""Where each target puts the graphs and side files of the folders it bundles.

- `server`: the folder as it is (model.onnx, its external data, tokenizer and configs,
  onnxforge.json): what `onnxforge serve` or any ONNX Runtime server loads.
- `web`: transformers.js's layout: configs and tokenizer at the root, one graph per dtype under
  `onnx/` (`model.onnx`, `model_fp16.onnx`, `model_q4.onnx`, `model_q4f16.onnx`,
  `model_quantized.onnx`), each with its weights in `<graph>_data` beside it, declared in config.json's
  `transformers.js_config.use_external_data_format`; graphs rewritten for the release
  onnxruntime-node and onnxruntime-web ship (`fuse runtime`).
- `mobile`: ONNX Runtime's ORT format (`model.ort`, one FlatBuffers file, 2 GB at most) and the
  `required_operators.config` of a reduced-operator build, through
  `onnxruntime.tools.convert_onnx_models_to_ort`.
- `genai`: the folder plus `genai_config.json` for onnxruntime-genai's runtime (genai.py).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxforge.errors import BadInput
from onnxforge.folder import (
    CONFIG_FILE,
    EXTERNAL_DATA_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    MODEL_FILES,
    ORT_FORMAT_FILE,
    PAST_PREFIX,
    REQUIRED_OPERATORS_FILE,
    WEB_GRAPH_FOLDER,
)
from onnxforge.passes.fusion.runtime_fit import fit_to_runtime

WEB_RUNTIME = (1, 30)  # onnxruntime-node 1.30 (transformers.js 4.3's) and onnxruntime-web 1.31 accept the same graphs
WEB_DATA_LIMIT = 2 << 30  # one ArrayBuffer in a browser, and protobuf's own limit
ORT_FORMAT_LIMIT = 2 << 30  # FlatBuffers offsets are 32-bit
TRANSFORMERS_JS_KEY = "transformers.js_config"
QUANTIZED_MATMULS = ("MatMulNBits", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul")


def side_files(folder: Path) -> list[Path]:
    """Configs, tokenizer and chat template: every file of the folder but the graph, weights and record."""
    return [p for p in sorted(folder.iterdir()) if p.is_file() and p.name not in MODEL_FILES]


def place_graph(folder: Path, target: Path, runtime: tuple[int, int] | None) -> None:
    """The folder's graph at `target` (weights in `target`_data beside it): copied as it is when `runtime` is None,
    else rewritten for that ONNX Runtime release (`fuse runtime`)."""
    data = folder / EXTERNAL_DATA_FILE
    if runtime is None and target.name == MODEL_FILE:
        shutil.copy2(folder / MODEL_FILE, target)
        if data.is_file():
            shutil.copy2(data, target.with_name(EXTERNAL_DATA_FILE))
        return
    model = ir.load(folder / MODEL_FILE)
    if runtime is not None:
        fit_to_runtime(model, runtime)
    ir.save(model, target, external_data=f"{target.name}_data" if target.name != MODEL_FILE else EXTERNAL_DATA_FILE)


def write_server(folder: Path, stage: Path, runtime: tuple[int, int] | None) -> list[tuple[str, Path]]:
    """The folder as it is (the graph rewritten for `runtime` if given); the graph is model.onnx."""
    for path in [*side_files(folder), folder / MANIFEST_FILE]:
        shutil.copy2(path, stage / path.name)
    place_graph(folder, stage / MODEL_FILE, runtime)
    return [(MODEL_FILE, folder)]


def web_dtype(model: ir.Model) -> str:
    """transformers.js's dtype of a graph: fp32, fp16, q4, q4f16 or q8 (from its cache dtype and weight kernels)."""
    past = next((v for v in model.graph.inputs if v.name.startswith(PAST_PREFIX)), None)
    half = past is not None and past.dtype == ir.DataType.FLOAT16
    bits = {node.attributes.get_int("bits", 4) for node in model.graph if node.op_type == "MatMulNBits"}
    if 4 in bits:
        return "q4f16" if half else "q4"
    if bits or any(node.op_type in QUANTIZED_MATMULS for node in model.graph):
        return "q8"
    return "fp16" if half else "fp32"


WEB_SUFFIX = {"fp32": "", "fp16": "_fp16", "q4": "_q4", "q4f16": "_q4f16", "q8": "_quantized"}


def write_web(folders: list[Path], stage: Path, runtime: tuple[int, int]) -> list[tuple[str, Path]]:
    """One graph per dtype under onnx/, side files of the first folder at the root, config.json declaring the data."""
    (stage / WEB_GRAPH_FOLDER).mkdir()
    graphs: dict[str, tuple[str, Path]] = {}
    for folder in folders:
        model = ir.load(folder / MODEL_FILE)
        dtype = web_dtype(model)
        if dtype in graphs:
            raise BadInput(f"'{folder}' and '{graphs[dtype][1]}' are both {dtype} graphs; transformers.js names one "
                           "file per dtype: bundle them separately")
        name = f"model{WEB_SUFFIX[dtype]}.onnx"
        data_bytes = (folder / EXTERNAL_DATA_FILE).stat().st_size if (folder / EXTERNAL_DATA_FILE).is_file() else 0
        if data_bytes > WEB_DATA_LIMIT:
            raise BadInput(f"'{folder}' has {data_bytes / 2**30:.1f} GiB of weights, over the 2 GiB a browser reads "
                           "as one file: quantise it (int4) first")
        place_graph(folder, stage / WEB_GRAPH_FOLDER / name, runtime)
        graphs[dtype] = (f"{WEB_GRAPH_FOLDER}/{name}", folder)
    for path in side_files(folders[0]):
        shutil.copy2(path, stage / path.name)
    _declare_web_graphs(stage / CONFIG_FILE, [graph for graph, _ in graphs.values()], next(iter(graphs)))
    return list(graphs.values())


def _declare_web_graphs(config_file: Path, graphs: list[str], default_dtype: str) -> None:
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    config[TRANSFORMERS_JS_KEY] = {
        "dtype": default_dtype,
        "use_external_data_format": {Path(graph).name: 1 for graph in graphs},
    }
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def write_mobile(folder: Path, stage: Path, optimization: str, runtime: tuple[int, int] | None) \
        -> list[tuple[str, Path]]:
    """model.ort (and required_operators.config) converted from the folder's graph, with the side files."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    weights = sum(p.stat().st_size for p in folder.glob(f"{MODEL_FILE}*"))
    if weights > ORT_FORMAT_LIMIT:
        raise BadInput(f"'{folder}' holds {weights / 2**30:.1f} GiB of graph and weights, over the ORT format's "
                       "2 GiB: quantise it (int4) first")
    work = stage / ".convert"
    work.mkdir()
    place_graph(folder, work / MODEL_FILE, runtime)
    style = OptimizationStyle.Runtime if optimization == "runtime" else OptimizationStyle.Fixed
    with contextlib.redirect_stdout(sys.stderr):  # the converter prints its progress; stdout is for --json
        convert_onnx_models_to_ort(work / MODEL_FILE, output_dir=work / "out", optimization_styles=[style],
                                   enable_type_reduction=False)
    produced = {p.name: p for p in (work / "out").iterdir()}
    ort_file = next(p for name, p in produced.items() if name.endswith(".ort"))
    config = next(p for name, p in produced.items() if name.endswith(".config"))
    ort_file.rename(stage / ORT_FORMAT_FILE)
    lines = config.read_text(encoding="utf-8").splitlines()  # its header names the (temporary) converted file
    lines = [f"# - {ORT_FORMAT_FILE}" if line.startswith("# - ") else line for line in lines]
    (stage / REQUIRED_OPERATORS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.rmtree(work)
    for path in side_files(folder):
        shutil.copy2(path, stage / path.name)
    return [(ORT_FORMAT_FILE, folder)]
