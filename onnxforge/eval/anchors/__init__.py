"""Engines timed by `onnxforge bench`: ours, and the anchors we compete with (each in its own process)."""
