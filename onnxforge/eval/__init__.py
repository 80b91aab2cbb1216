"""Measuring models: perplexity and task accuracy (through our runtime or torch), speed, memory, size."""
