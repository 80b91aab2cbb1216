"""int8 weights and activations through onnxruntime.quantization (its kernels and calibrators, wrapped).

- `dynamic`: `quantize_dynamic`, per-channel int8 weights; activations are quantised at run time
  (DynamicQuantizeLinear + MatMulInteger).
- `static`: `quantize_static` in QDQ format: explicit QuantizeLinear/DequantizeLinear pairs with
  activation ranges measured by ONNX Runtime's MinMax, Entropy or Percentile calibrator on our
  calibration text. The CPU provider fuses the pairs into integer kernels; symmetric ranges
  (the default) are what TensorRT needs for explicit-precision int8.
Only weight MatMuls chosen by name (globs) are touched; activations with massive outliers make
per-tensor int8 costly (the default model's `down_proj` inputs), so recipes exclude them by name.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from onnxforge.passes.base import PassConfig, PassRefused, adopt_graph, check_choice
from onnxforge.passes.calibration import CalibratedPass, Calibration, calibration_feeds, graph_inputs
from onnxforge.passes.quantize.weight_matmuls import select, weight_matmuls

MODES = ("dynamic", "static")
CALIBRATORS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


@dataclasses.dataclass(frozen=True)
class QuantizeInt8Config(PassConfig):
    """Dynamic or static (QDQ) int8, the calibrator for static, and which weight MatMuls (globs)."""

    mode: str = "dynamic"
    calibrator: str = "minmax"
    per_channel: bool = True
    symmetric_activations: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def validate(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("calibrator", self.calibrator, tuple(CALIBRATORS))


class QuantizeInt8Pass(CalibratedPass):
    """Quantise the chosen weight MatMuls to int8 with ONNX Runtime's quantiser."""

    name = "quantize-int8"
    config_class = QuantizeInt8Config
    summary = "int8 weights and activations via onnxruntime.quantization: dynamic, or static QDQ with calibration"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        config: QuantizeInt8Config = self.config
        log = self.log(model)
        chosen = [w for w in select(weight_matmuls(model.graph), config.include, config.exclude) if not w.transposed]
        if not chosen:
            raise PassRefused("no weight MatMul with its own initializer matches include/exclude: nothing to quantise")
        names = [w.node.name for w in chosen]
        with tempfile.TemporaryDirectory(prefix="onnxforge-int8-") as folder:
            quantized = Path(folder) / "quantized.onnx"
            self._quantize(model, names, quantized)
            adopt_graph(model, ir.external_data.load_to_model(ir.load(quantized)))
        log.write(matmuls_quantized=len(names), weights=[w.name for w in chosen])
        return ir.passes.PassResult(model, modified=True)

    def _quantize(self, model: ir.Model, names: list[str], out: Path) -> None:
        config: QuantizeInt8Config = self.config
        proto = ir.to_proto(model)
        common = {
            "op_types_to_quantize": ["MatMul"],
            "per_channel": config.per_channel,
            "nodes_to_quantize": names,
            "use_external_data_format": True,
        }
        if config.mode == "dynamic":
            quantize_dynamic(
                proto, out, weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True}, **common
            )
            return
        options = {
            "MatMulConstBOnly": True,
            "ActivationSymmetric": config.symmetric_activations,
            "WeightSymmetric": True,
        }
        quantize_static(
            proto,
            out,
            _Reader(self.calibrated(), model),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATORS[config.calibrator],
            extra_options=options,
            **common,
        )


class _Reader(CalibrationDataReader):
    """Our calibration rows as onnxruntime.quantization feeds (batch 1, empty past)."""

    def __init__(self, calibration: Calibration, model: ir.Model) -> None:
        inputs = graph_inputs(model)
        self._feeds = iter([calibration_feeds(inputs, row) for row in calibration.rows])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)
