"""Check that optimum's ORTModelForCausalLM loads an onnxforge folder unchanged and agrees with our loop.

optimum-onnx pins transformers<4.58, so it cannot share onnxforge's environment: `make optimum-compat`
runs `python onnxforge/eval/optimum_compat.py optimum DIR` in .venv-optimum (greedy tokens as JSON, batch 1,
then a left-padded batch), and `python onnxforge/eval/optimum_compat.py compare DIR FILE` in .venv.
"""

from __future__ import annotations

import json
import sys

PROMPTS = ["The capital of France is", "Once upon a time, in a small village by the sea, there lived"]
NEW_TOKENS = 32


def optimum_tokens(folder: str) -> dict[str, list[list[int]]]:
    """Greedy continuations from optimum, one prompt at a time and as one left-padded batch."""
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    model = ORTModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    single = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        single.append(out[0, ids.input_ids.shape[1]:].tolist())
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False)
    return {"single": single, "batch": out[:, batch.input_ids.shape[1]:].tolist()}


def compare(folder: str, optimum_file: str) -> int:
    """Compare optimum's tokens with onnxforge's greedy loop; print the verdict, exit 1 on a mismatch."""
    from onnxforge.runtime.decoder import Decoder
    from onnxforge.runtime.loop import greedy_continuations
    from onnxforge.runtime.text import TextCodec

    theirs = json.loads(open(optimum_file, encoding="utf-8").read())
    codec, decoder = TextCodec(folder), Decoder(folder)
    stop = frozenset(codec.stop_ids())
    ours = [greedy_continuations(decoder, [codec.encode(p)], NEW_TOKENS, stop)[0] for p in PROMPTS]
    same_single = sum(a == b for a, b in zip(ours, theirs["single"]))
    same_batch = sum(b[: len(a)] == a for a, b in zip(ours, theirs["batch"]))
    print(f"optimum loaded {folder}; greedy identical to onnxforge: {same_single}/{len(PROMPTS)} alone, "
          f"{same_batch}/{len(PROMPTS)} in a left-padded batch")
    return 0 if same_single == same_batch == len(PROMPTS) else 1


if __name__ == "__main__":
    if sys.argv[1] == "optimum":
        print(json.dumps(optimum_tokens(sys.argv[2])))
    else:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
