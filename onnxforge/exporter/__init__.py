"""torch -> ONNX decoder with past, the folder writer and parity validation (needs onnxforge[export])."""
