"""Per-architecture facts: the few things the exporter and the passes need to know.

One table, one small record per architecture, in the spirit of optimum's export configs. The
exporter refuses a model_type that has no row; the structural passes (pruning, low-rank,
sparsity) find a layer's projections by the weight names its row gives, and refuse a row that
is not `structural`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """How one decoder layer of an architecture is built, by the Hugging Face names of its weights.

    A layer's projection `p` of module `m` has the weight `{layer_prefix}.{i}.{m}.{p}.weight`.
    `structural` architectures (separate q/k/v/o, gated gate/up/down MLP) are the ones the
    structural passes can cut; packed q/k/v (gpt2's c_attn) or an ungated MLP they refuse.
    """

    model_type: str
    attention_projections: tuple[str, ...]
    mlp_projections: tuple[str, ...]
    attention_module: str = "self_attn"
    mlp_module: str = "mlp"
    layer_prefix: str = "model.layers"
    packed_qkv: bool = False
    gated_mlp: bool = True

    @property
    def structural(self) -> bool:
        """Separate q/k/v/o projections and a gated MLP: what structural pruning needs."""
        return not self.packed_qkv and self.gated_mlp

    def weight_name(self, layer: int, projection: str) -> str:
        """The initializer name of layer `layer`'s `projection` (attention names are looked up first)."""
        module = self.attention_module if projection in self.attention_projections else self.mlp_module
        if projection not in self.attention_projections + self.mlp_projections:
            raise KeyError(f"{self.model_type} has no projection {projection!r}")
        return f"{self.layer_prefix}.{layer}.{module}.{projection}.weight"


LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
GATED_MLP = ("gate_proj", "up_proj", "down_proj")

ARCHITECTURES: dict[str, Architecture] = {
    arch.model_type: arch
    for arch in (
        Architecture("llama", LLAMA_ATTENTION, GATED_MLP),
        Architecture("mistral", LLAMA_ATTENTION, GATED_MLP),
        Architecture("qwen2", LLAMA_ATTENTION, GATED_MLP),
        Architecture("gpt2", ("c_attn", "c_proj"), ("c_fc", "c_proj"), attention_module="attn",
                     layer_prefix="transformer.h", packed_qkv=True, gated_mlp=False),
    )
}


def structural_names() -> tuple[str, ...]:
    """The architectures the structural passes support."""
    return tuple(name for name, arch in ARCHITECTURES.items() if arch.structural)


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
    sliding_window: int | None = None

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
            "sliding_window": self.sliding_window,
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
        sliding_window=sliding_window(config),
    )


def sliding_window(config: Any) -> int | None:
    """The attention window of a sliding-window model (Mistral, Qwen2 with use_sliding_window), else None."""
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or getattr(config, "use_sliding_window", True) is False:
        return None
    return window
