"""Running exported folders with ONNX Runtime. Imports onnxruntime, numpy, tokenizers, jinja2: never torch."""
