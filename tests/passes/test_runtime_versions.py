"""The minimum ONNX Runtime version of a graph follows its IR, opset, contrib ops, inputs and attributes."""

from __future__ import annotations

import onnx_ir as ir
import pytest

from onnxforge.folder import MS_DOMAIN
from onnxforge.passes.runtime_versions import minimum_version, parse_version, unknown_ops


def _model(nodes: list[ir.Node], values: list[ir.Value], opset: int = 18, ir_version: int = 9) -> ir.Model:
    graph = ir.Graph(inputs=values, outputs=[nodes[-1].outputs[0]], nodes=nodes,
                     opset_imports={"": opset, MS_DOMAIN: 1})
    return ir.Model(graph, ir_version=ir_version)


def _value(name: str, dtype: ir.DataType = ir.DataType.FLOAT) -> ir.Value:
    return ir.Value(name=name, type=ir.TensorType(dtype), shape=ir.Shape([1]))


def _gqa(inputs: int, **attributes: int) -> ir.Model:
    values = [_value(f"in{i}") for i in range(7)]
    padded = [*values, *([None] * (inputs - 8)), _value("query_seqlens", ir.DataType.INT32)] if inputs > 7 else values
    graph_inputs = [v for v in padded if v is not None]
    node = ir.Node(MS_DOMAIN, "GroupQueryAttention", padded, num_outputs=3,
                   attributes=[ir.AttrInt64(name, value) for name, value in attributes.items()])
    return _model([node], graph_inputs)


@pytest.mark.parametrize(("inputs", "version"), [(7, (1, 18)), (11, (1, 22)), (16, (1, 28)), (17, (1, 32))])
def test_group_query_attention_needs_the_release_that_has_as_many_inputs(inputs: int, version: tuple) -> None:
    assert minimum_version(_gqa(inputs))[0] == version


def test_empty_trailing_inputs_count_and_the_reason_names_them() -> None:
    version, reasons = minimum_version(_gqa(17, num_heads=2, kv_num_heads=1))
    assert version == (1, 32) and reasons[0].what == "GroupQueryAttention with 17 inputs"
    assert reasons[0].to_json() == {"onnxruntime": "1.32", "for": "GroupQueryAttention with 17 inputs"}


def test_an_attribute_can_decide_the_version() -> None:
    assert minimum_version(_gqa(11, causal=1))[0] == (1, 30)


def _one_node(op: str, dtypes: list[ir.DataType], **attributes: int) -> ir.Model:
    values = [_value(f"in{i}", dtype) for i, dtype in enumerate(dtypes)]
    node = ir.Node(MS_DOMAIN, op, values, attributes=[ir.AttrInt64(k, v) for k, v in attributes.items()])
    return _model([node], values)


FLOAT, UINT8, INT64 = ir.DataType.FLOAT, ir.DataType.UINT8, ir.DataType.INT64


def test_eight_bit_matmulnbits_and_packed_gather_block_quantized() -> None:
    assert minimum_version(_one_node("MatMulNBits", [FLOAT, UINT8, FLOAT], bits=4))[0] == (1, 16)
    assert minimum_version(_one_node("MatMulNBits", [FLOAT, UINT8, FLOAT], bits=8))[0] == (1, 23)
    assert minimum_version(_one_node("MatMulNBits", [FLOAT, UINT8, FLOAT, FLOAT]))[0] == (1, 18)
    assert minimum_version(_one_node("GatherBlockQuantized", [UINT8, INT64, FLOAT]))[0] == (1, 22)
    assert minimum_version(_one_node("GatherBlockQuantized", [UINT8, INT64, FLOAT], bits=4))[0] == (1, 23)


def _relu(opset: int, ir_version: int) -> ir.Model:
    x = _value("x")
    return _model([ir.Node("", "Relu", [x])], [x], opset=opset, ir_version=ir_version)


def test_ir_and_opset_imports_and_unknown_contrib_ops() -> None:
    assert minimum_version(_relu(18, 9))[0] == (1, 16)
    assert minimum_version(_relu(22, 10))[0] == (1, 21)
    assert minimum_version(_relu(21, 14))[0] == (1, 32)
    assert unknown_ops(_one_node("SomethingNew", [FLOAT])) == ["SomethingNew"]


def test_versions_parse_from_text() -> None:
    assert parse_version("1.30") == (1, 30) and parse_version("1.32.0") == (1, 32)
    with pytest.raises(ValueError, match="write it as 1.30"):
        parse_version("latest")
