"""Tiny random models built from transformers configs, with a byte-level tokenizer.

They are real models of each supported architecture (2 layers, hidden 64), seeded, so tests
export and validate them in seconds without downloading anything. Source name: `tiny:ARCH`.
"""

from __future__ import annotations

from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_VOCAB_SIZE = 256 + len(_SPECIAL_TOKENS)

_GQA = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}
_WINDOW = 16  # shorter than the parity prompts, so every check crosses it
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {**_GQA, "tie_word_embeddings": True},
    "mistral": {**_GQA, "tie_word_embeddings": False, "sliding_window": _WINDOW},
    "qwen2": {**_GQA, "tie_word_embeddings": True},
    "gpt2": {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 256, "tie_word_embeddings": True},
    "qwen3": {**_GQA, "head_dim": 32, "tie_word_embeddings": True},
    "gemma3_text": {**_GQA, "head_dim": 16, "sliding_window": _WINDOW, "query_pre_attn_scalar": 16,
                    "layer_types": ["sliding_attention", "full_attention"], "rope_local_base_freq": 10000.0,
                    "tie_word_embeddings": True},
    "phi3": {**_GQA, "original_max_position_embeddings": 64, "tie_word_embeddings": False,
             "partial_rotary_factor": 0.5,
             "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 4, "long_factor": [1.5] * 4}},
    "smollm3": {**_GQA, "no_rope_layers": [1, 0], "tie_word_embeddings": True},
    "granite": {**_GQA, "embedding_multiplier": 2.0, "attention_multiplier": 0.2, "residual_multiplier": 0.5,
                "logits_scaling": 4.0, "tie_word_embeddings": True},
    "olmo2": {**_GQA, "tie_word_embeddings": False},
    "gemma2": {**_GQA, "head_dim": 16, "sliding_window": _WINDOW, "attn_logit_softcapping": 0.5,
               "final_logit_softcapping": 30.0, "query_pre_attn_scalar": 16, "tie_word_embeddings": True},
}


def tiny_tokenizer() -> Any:
    """A byte-level tokenizer (256 bytes + ChatML specials) wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(_SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def tiny_model(model_type: str, seed: int = 0) -> Any:
    """A seeded random causal LM of `model_type`, in eval mode, with the tiny tokenizer's vocab."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    special = {name: i + 256 for i, name in enumerate(("pad", "bos", "eos"))}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=_VOCAB_SIZE,
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
        pad_token_id=special["pad"],
        **TINY_CONFIGS[model_type],
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()
