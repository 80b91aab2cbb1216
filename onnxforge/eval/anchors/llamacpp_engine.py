"""llama.cpp through llama-cpp-python on the original GGUF (runs in the llama.cpp venv)."""

from __future__ import annotations

import time

from onnxforge.eval.protocol import main


class LlamaCppEngine:
    """`Llama.generate`, greedy (top-k 1), exactly N new tokens."""

    def __init__(self, model: str, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=2048, verbose=False)

    def token_times(self, rows: list[list[int]], new_tokens: int) -> list[float]:
        self.llm.reset()  # otherwise generate() reuses the cached prompt and the time to first token is ~0
        start, times = time.perf_counter(), []
        for _ in self.llm.generate(rows[0], top_k=1, temp=0.0, reset=True):
            times.append(time.perf_counter() - start)
            if len(times) == new_tokens:
                break
        return times


if __name__ == "__main__":
    main(LlamaCppEngine)
