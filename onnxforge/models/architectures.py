"""Per-architecture facts: the few things the exporter and the passes need to know.

One table, one small record per architecture, in the spirit of optimum's export configs. A
decoder-only model without a row is exported on the generic path (shape facts from its config,
kept only if parity passes); the structural passes (pruning, low-rank, sparsity) find a layer's
projections by the weight names its row gives, and refuse an architecture whose row is missing
or not `structural`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """How one decoder layer of an architecture is built, by the Hugging Face names of its weights.

    A layer's projection `p` of module `m` has the weight `{layer_prefix}.{i}.{m}.{p}.weight`, or
    `{layer_prefix}.{i}.{paths[p]}.weight` when the architecture names its modules its own way (BERT).
    `post_norm`: the layer ends with a norm after its last residual Add (BERT's LayerNorm).
    `encoder`: a bidirectional encoder (exported for feature extraction, never as a causal LM).
    `cut_by` names the structural passes checked on the architecture's tiny model (separate
    q/k/v/o and gate/up/down projections are the precondition; a residual after a post-norm or a
    multiplier hides the layer boundary from drop-layers, a q/k norm over all heads breaks
    prune-heads); the other passes refuse it. `features` says in a few words what sets it apart.
    """

    model_type: str
    attention_projections: tuple[str, ...]
    mlp_projections: tuple[str, ...]
    attention_module: str = "self_attn"
    mlp_module: str = "mlp"
    layer_prefix: str = "model.layers"
    packed_qkv: bool = False
    gated_mlp: bool = True
    cut_by: tuple[str, ...] = ()
    features: str = ""
    paths: tuple[tuple[str, str], ...] = ()
    post_norm: bool = False
    encoder: bool = False

    def has(self, projection: str) -> bool:
        """Whether the layer has this projection (BERT has no gate_proj)."""
        return projection in self.attention_projections + self.mlp_projections

    def weight_name(self, layer: int, projection: str) -> str:
        """The initializer name of layer `layer`'s `projection` (attention names are looked up first)."""
        if not self.has(projection):
            raise KeyError(f"{self.model_type} has no projection {projection!r}")
        if self.paths:
            return f"{self.layer_prefix}.{layer}.{dict(self.paths)[projection]}.weight"
        module = self.attention_module if projection in self.attention_projections else self.mlp_module
        return f"{self.layer_prefix}.{layer}.{module}.{projection}.weight"


LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
GATED_MLP = ("gate_proj", "up_proj", "down_proj")
STRUCTURAL_PASSES = ("prune-ffn", "prune-heads", "drop-layers", "sparsify", "lowrank")
BERT_PATHS = (("q_proj", "attention.self.query"), ("k_proj", "attention.self.key"), ("v_proj", "attention.self.value"),
              ("o_proj", "attention.output.dense"), ("up_proj", "intermediate.dense"), ("down_proj", "output.dense"))

ARCHITECTURES: dict[str, Architecture] = {
    arch.model_type: arch
    for arch in (
        Architecture("llama", LLAMA_ATTENTION, GATED_MLP, cut_by=STRUCTURAL_PASSES,
                     features="the reference: RMSNorm, rotary, gated MLP, GQA"),
        Architecture("mistral", LLAMA_ATTENTION, GATED_MLP, cut_by=STRUCTURAL_PASSES,
                     features="sliding-window attention on every layer"),
        Architecture("qwen2", LLAMA_ATTENTION, GATED_MLP, cut_by=STRUCTURAL_PASSES,
                     features="q/k/v biases; a sliding window only with use_sliding_window"),
        Architecture("gpt2", ("c_attn", "c_proj"), ("c_fc", "c_proj"), attention_module="attn",
                     layer_prefix="transformer.h", packed_qkv=True, gated_mlp=False,
                     features="packed c_attn, learned positions, LayerNorm, GELU MLP (projections export as Gemm)"),
        Architecture("qwen3", LLAMA_ATTENTION, GATED_MLP, cut_by=STRUCTURAL_PASSES,
                     features="per-head RMSNorm on q and k before rotary; head_dim independent of hidden / heads"),
        Architecture("gemma3_text", LLAMA_ATTENTION, GATED_MLP,
                     features="sliding and global layers interleaved, two rotary bases, (1 + w) RMSNorm, q/k norm, "
                              "embeddings scaled by sqrt(hidden), query_pre_attn_scalar"),
        Architecture("phi3", ("qkv_proj", "o_proj"), ("gate_up_proj", "down_proj"), packed_qkv=True,
                     features="fused qkv_proj and gate_up_proj; LongRoPE (long factors past the original length); "
                              "partial rotary (Phi-4-mini)"),
        Architecture("smollm3", LLAMA_ATTENTION, GATED_MLP, cut_by=STRUCTURAL_PASSES,
                     features="some layers without rotary"),
        Architecture("granite", LLAMA_ATTENTION, GATED_MLP, cut_by=("prune-ffn", "prune-heads", "sparsify", "lowrank"),
                     features="embedding, attention and residual multipliers; logits scaling"),
        Architecture("olmo2", LLAMA_ATTENTION, GATED_MLP, cut_by=("prune-ffn",),
                     features="RMSNorm after attention and MLP; q/k norm over all heads"),
        Architecture("gemma2", LLAMA_ATTENTION, GATED_MLP,
                     features="attention and final-logit soft-capping; sliding window on alternate layers"),
        *(Architecture(encoder, LLAMA_ATTENTION, ("up_proj", "down_proj"), layer_prefix="encoder.layer",
                       gated_mlp=False, paths=BERT_PATHS, post_norm=True, encoder=True,
                       cut_by=("prune-ffn", "drop-layers", "sparsify", "lowrank"),
                       features="encoder: post-LayerNorm, GELU MLP, absolute positions, in-graph sentence pooling")
          for encoder in ("bert", "roberta")),
    )
}


def architecture(model_type: str) -> Architecture:
    """The table's row for `model_type`, or a generic row: no projection names, nothing structural."""
    return ARCHITECTURES.get(model_type) or Architecture(model_type, (), (), gated_mlp=False)


def is_decoder_only(model_type: str | None) -> bool:
    """Whether transformers builds a decoder-only causal LM for `model_type` (the generic export path)."""
    from transformers.models.auto import modeling_auto as auto

    encoders = set(auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES) | set(auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
    return model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in encoders


def cut_by_names(pass_name: str) -> tuple[str, ...]:
    """The architectures the structural pass `pass_name` is checked on."""
    return tuple(name for name, arch in ARCHITECTURES.items() if pass_name in arch.cut_by)


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
    sliding_layers: tuple[int, ...] | None = None  # None: every layer slides (when there is a window)

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
            "sliding_layers": None if self.sliding_layers is None else list(self.sliding_layers),
        }


def is_decoder_row(model_type: str | None) -> bool:
    """Whether the table has a decoder-only causal LM row for `model_type`."""
    row = ARCHITECTURES.get(model_type or "")
    return row is not None and not row.encoder


def supported_names() -> str:
    """The causal LM architectures with a row, comma-separated, for error messages."""
    return ", ".join(sorted(name for name, row in ARCHITECTURES.items() if not row.encoder))


def facts_from_config(config: Any) -> ModelFacts:
    """Read the shape facts from a transformers config (attribute maps resolve GPT-2's names)."""
    arch = architecture(config.model_type)
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
        sliding_layers=sliding_layers(config),
    )


def sliding_layers(config: Any) -> tuple[int, ...] | None:
    """The layers whose `layer_types` entry is sliding attention (None when the config lists no types)."""
    types = getattr(config, "layer_types", None)
    return None if types is None else tuple(i for i, kind in enumerate(types) if kind == "sliding_attention")


def sliding_window(config: Any) -> int | None:
    """The attention window of a sliding-window model (Mistral, Qwen2 with use_sliding_window), else None."""
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or getattr(config, "use_sliding_window", True) is False:
        return None
    return window
