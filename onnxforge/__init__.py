"""onnxforge: PyTorch language model -> small, fast, validated ONNX deployment."""

__version__ = "0.1.0"
