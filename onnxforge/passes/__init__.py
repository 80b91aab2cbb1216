"""Graph passes (ONNX -> smaller, faster ONNX): base, registry, recipes, the compress pipeline, calibration.

The passes themselves live in rooms: `fusion/`, `prune/`, `quantize/` (and `cleanup` here).
"""
