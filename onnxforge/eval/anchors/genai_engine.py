"""onnxruntime-genai with its own runtime, on a folder from its model builder (runs in the genai venv)."""

from __future__ import annotations

import json
import time

from onnxforge.eval.protocol import main


class GenaiEngine:
    """`og.Generator`, greedy, one `generate_next_token` per token."""

    def __init__(self, model: str, threads: int) -> None:
        import onnxruntime_genai as og

        config = og.Config(model)
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        self.og, self.model = og, og.Model(config)

    def token_times(self, rows: list[list[int]], new_tokens: int) -> list[float]:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=len(rows[0]) + new_tokens, min_length=0)
        start, times = time.perf_counter(), []
        generator = self.og.Generator(self.model, params)
        generator.append_tokens(rows)
        for _ in range(new_tokens):
            generator.generate_next_token()
            times.append(time.perf_counter() - start)
        return times


if __name__ == "__main__":
    main(GenaiEngine)
