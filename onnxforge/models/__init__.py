"""Where weights come from: named defaults, Hugging Face folders, GGUF files, tiny test models."""

from onnxforge.models.architectures import ARCHITECTURES, ModelFacts, facts_from_config
from onnxforge.models.sources import DEFAULT_MODEL, LoadedModel, load_source

__all__ = ["ARCHITECTURES", "DEFAULT_MODEL", "LoadedModel", "ModelFacts", "facts_from_config", "load_source"]
