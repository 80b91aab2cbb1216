"""Export defaults, importable without torch (the CLI parser shows them)."""

DEFAULT_OPSET = 18
# torch's dynamo exporter writes opset 18 and above; ONNX Runtime 1.2x reads up to 23.
MIN_OPSET, MAX_OPSET = 18, 23
DEFAULT_TOLERANCE = 1e-3
GREEDY_TOKENS = 32
