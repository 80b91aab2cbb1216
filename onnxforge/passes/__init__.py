"""Graph passes: onnx-ir passes over exported decoders, a registry, TOML recipes and the compress pipeline."""
