"""Greedy generation with onnxruntime-genai's own runtime from an onnxforge `genai` bundle (no onnxforge needed).

    python examples/genai/generate.py BUNDLE MAX_NEW_TOKENS PROMPT_IDS_JSON...

Prints one JSON object: {"results": [{"token_ids": [...]}], "load_s": ..., "tokens_per_s": ...}. The C#, Java
and Objective-C bindings of onnxruntime-genai make the same calls (Model, GeneratorParams, Generator).
"""

from __future__ import annotations

import json
import sys
import time

import onnxruntime_genai as og


def main() -> None:
    """Generate for each prompt (token ids) and print the new ids."""
    bundle, max_new_tokens, *prompts = sys.argv[1:]
    start = time.perf_counter()
    model = og.Model(bundle)
    load_s = time.perf_counter() - start
    results, new_tokens, seconds = [], 0, 0.0
    for prompt in prompts:
        ids = json.loads(prompt)
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + int(max_new_tokens))
        start = time.perf_counter()
        generator = og.Generator(model, params)
        generator.append_tokens([ids])
        while not generator.is_done():
            generator.generate_next_token()
        seconds += time.perf_counter() - start
        new = [int(t) for t in generator.get_sequence(0)][len(ids):]
        new_tokens += len(new)
        results.append({"token_ids": new})
    print(json.dumps({"results": results, "load_s": load_s, "tokens_per_s": new_tokens / max(seconds, 1e-9)}))


if __name__ == "__main__":
    main()
