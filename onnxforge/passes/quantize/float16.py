"""float16 weights and compute for GPU providers, through onnxruntime.transformers' converter (wrapped).

With `keep_io_types` (the default) the graph's inputs and outputs stay float32 (a Cast at each
end), so callers and our runtime feed the same arrays as before; without it the KV cache and
logits become float16 too. ONNX Runtime's CPU provider lacks float16 kernels for several ops, so
the result is meant for CUDA / TensorRT; `op_block_list` keeps named op types in float32.
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from onnxforge.passes.base import OnnxforgePass, PassConfig, adopt_graph


@dataclasses.dataclass(frozen=True)
class Float16Config(PassConfig):
    """Keep float32 graph inputs/outputs, and op types to leave in float32."""

    keep_io_types: bool = True
    op_block_list: tuple[str, ...] = ()


class Float16Pass(OnnxforgePass):
    """Convert float32 initializers and computation to float16."""

    name = "float16"
    config_class = Float16Config
    summary = "float16 weights and compute for GPU providers (float32 inputs/outputs kept)"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        log = self.log(model)
        converted = convert_float_to_float16(
            ir.to_proto(model),
            keep_io_types=self.config.keep_io_types,
            op_block_list=DEFAULT_OP_BLOCK_LIST + list(self.config.op_block_list),
        )
        adopt_graph(model, ir.from_proto(converted))
        common_passes.TopologicalSortPass()(model)  # the converter appends its input Casts last
        log.write(keep_io_types=self.config.keep_io_types)
        return ir.passes.PassResult(model, modified=True)
