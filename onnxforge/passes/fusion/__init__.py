"""Fusion: rewrite decomposed ops into ONNX Runtime's contrib kernels (one fusion per module, `fuse` runs them)."""
