"""A small Llama trained for a few minutes on the shipped calibration passages: a model whose weights
are NOT on a 4-bit grid, to compare general-purpose quantisation methods (RTN vs GPTQ vs HQQ).

    .venv/bin/python benchmarks/train_tiny_llama.py OUT --tokenizer /tmp/smol [--minutes 6] [--seed 0]

OUT becomes a Hugging Face folder (safetensors + config + the tokenizer of --tokenizer), which
`onnxforge export OUT DIR` exports. Trained only on onnxforge/data/calibration (never on an
evaluation set); WikiText-2 then measures it on text it has not seen.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

PASSAGES = Path(__file__).resolve().parents[1] / "onnxforge" / "data" / "calibration" / "boolq_passages.jsonl"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer", type=Path, required=True, help="a folder with tokenizer.json")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    tokenizer = Tokenizer.from_file(str(args.tokenizer / "tokenizer.json"))
    texts = [json.loads(line)["text"] for line in PASSAGES.read_text().splitlines() if line.strip()]
    ids = np.concatenate([tokenizer.encode(text + "\n\n").ids for text in texts]).astype(np.int64)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    start, step, sequence, batch = time.perf_counter(), 0, 128, 8
    while time.perf_counter() - start < 60 * args.minutes:
        starts = rng.integers(0, len(ids) - sequence - 1, size=batch)
        inputs = torch.from_numpy(np.stack([ids[s : s + sequence] for s in starts]))
        loss = model(input_ids=inputs, labels=inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    model.save_pretrained(args.out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (args.tokenizer / name).exists():
            shutil.copy(args.tokenizer / name, args.out / name)
    print(f"{step} steps, last loss {loss.item():.3f}: saved {args.out}")


if __name__ == "__main__":
    main()
