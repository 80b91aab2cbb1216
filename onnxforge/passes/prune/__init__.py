"""Pruning and factorisation: passes that cut a decoder's projections (FFN channels, heads, layers, weights, rank)."""
