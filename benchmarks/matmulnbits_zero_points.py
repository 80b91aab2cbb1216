"""How fast ONNX Runtime's CPU MatMulNBits is with no / uint8 / float zero points (one decode-sized MatMul).

    .venv/bin/python benchmarks/matmulnbits_zero_points.py [--k 1536] [--n 1536] [--threads 2]

A Q4_1 GGUF block is `d * q + m`: exact in MatMulNBits only with float zero points (-m/d is not a
whole number). This times 20 MatMulNBits nodes [1, K] x [K, N] (4-bit, blocks of 32) per run, for
accuracy_level 0 (float compute) and 4 (int8 compute), and prints microseconds per MatMul.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BLOCK, NODES, RUNS = 32, 20, 50


def graph(k: int, n: int, zero_points: str, accuracy_level: int, rng: np.random.Generator) -> bytes:
    blocks = k // BLOCK
    initializers = [
        numpy_helper.from_array(rng.integers(0, 256, size=(n, blocks, BLOCK // 2), dtype=np.uint8), "codes"),
        numpy_helper.from_array(rng.random(n * blocks, dtype=np.float32) * 0.01, "scales"),
    ]
    if zero_points == "uint8":
        packed = rng.integers(0, 256, size=n * ((blocks + 1) // 2), dtype=np.uint8)
        initializers.append(numpy_helper.from_array(packed, "zeros"))
    elif zero_points == "float":
        initializers.append(numpy_helper.from_array((rng.random(n * blocks) * 15).astype(np.float32), "zeros"))
    inputs = ["x", "codes", "scales"] + (["zeros"] if zero_points != "none" else [])
    attributes = {"K": k, "N": n, "bits": 4, "block_size": BLOCK, "accuracy_level": accuracy_level}
    nodes = [helper.make_node("MatMulNBits", inputs, [f"y{i}"], domain="com.microsoft", **attributes) for i in range(NODES)]
    outputs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, n]) for i in range(NODES)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])
    model = helper.make_model(
        helper.make_graph(nodes, "matmulnbits", [x], outputs, initializers),
        opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)],
    )
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=1536)
    parser.add_argument("--n", type=int, default=1536)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    print(f"MatMulNBits [1, {args.k}] x [{args.k}, {args.n}], 4-bit, blocks of {BLOCK}, {args.threads} threads")
    for zero_points in ("none", "uint8", "float"):
        for level in (0, 4):
            session = ort.InferenceSession(graph(args.k, args.n, zero_points, level, rng), options)
            feeds = {"x": rng.random((1, args.k), dtype=np.float32)}
            for _ in range(5):
                session.run(None, feeds)
            start = time.perf_counter()
            for _ in range(RUNS):
                session.run(None, feeds)
            each = (time.perf_counter() - start) / RUNS / NODES
            print(f"  zero points {zero_points:5s}  accuracy_level {level}: {each * 1e6:8.1f} us per MatMul")


if __name__ == "__main__":
    main()
