"""onnxforge's runtime as a bench engine: the token loop over an exported folder."""

from __future__ import annotations

import time

from onnxforge.eval.protocol import main
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.loop import TokenLoop
from onnxforge.runtime.session import SessionSettings


class OnnxforgeEngine:
    """Greedy decoding through `TokenLoop` (IO binding, KV cache kept in onnxruntime values)."""

    def __init__(self, model: str, threads: int) -> None:
        self.decoder = Decoder(model, SessionSettings.with_threads(threads))

    def token_times(self, rows: list[list[int]], new_tokens: int) -> list[float]:
        start, times = time.perf_counter(), []
        for _ in TokenLoop(self.decoder, rows, new_tokens):
            times.append(time.perf_counter() - start)
        return times


if __name__ == "__main__":
    main(OnnxforgeEngine)
