"""Quantisation: block-wise int4/int8 weights, int8 QDQ, per-layer mixed precision, float16."""
