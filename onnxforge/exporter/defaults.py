"""Export defaults, importable without torch (the CLI parser shows them)."""

DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-3
GREEDY_TOKENS = 32
