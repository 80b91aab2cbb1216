"""Per-architecture facts: the few things the exporter and the passes need to know.

One table, one small record per architecture, in the spirit of optimum's export configs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """Names of the projections in one decoder layer of an architecture."""

    model_type: str
    attention_projections: tuple[str, ...]
    mlp_projections: tuple[str, ...]
    packed_qkv: bool = False


_LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_GATED_MLP = ("gate_proj", "up_proj", "down_proj")

ARCHITECTURES: dict[str, Architecture] = {
    arch.model_type: arch
    for arch in (
        Architecture("llama", _LLAMA_ATTENTION, _GATED_MLP),
        Architecture("mistral", _LLAMA_ATTENTION, _GATED_MLP),
        Architecture("qwen2", _LLAMA_ATTENTION, _GATED_MLP),
        Architecture("gpt2", ("c_attn", "c_proj"), ("c_fc", "c_proj"), packed_qkv=True),
    )
}


@dataclass(frozen=True)
class ModelFacts:
    """Shape facts of one model, read from its transformers config."""

    architecture: Architecture
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    max_positions: int
    tied_embeddings: bool

    def to_json(self) -> dict[str, Any]:
        """The facts as plain JSON values (for onnxforge.json)."""
        return {
            "model_type": self.architecture.model_type,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "max_positions": self.max_positions,
            "tied_embeddings": self.tied_embeddings,
        }


def supported_names() -> str:
    """The exportable architectures, comma-separated, for error messages."""
    return ", ".join(sorted(ARCHITECTURES))


def facts_from_config(config: Any) -> ModelFacts:
    """Read the shape facts from a transformers config (attribute maps resolve GPT-2's names)."""
    arch = ARCHITECTURES[config.model_type]
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelFacts(
        architecture=arch,
        num_layers=config.num_hidden_layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        hidden_size=config.hidden_size,
        vocab_size=config.vocab_size,
        max_positions=config.max_position_embeddings,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
    )
