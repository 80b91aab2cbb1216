"""Hugging Face optimum's ORTModelForCausalLM on optimum's own export (runs in the optimum anchor venv)."""

from __future__ import annotations

from onnxforge.eval.protocol import main, streamed_times


class OptimumEngine:
    """`ORTModelForCausalLM.generate`, greedy, exactly N new tokens, timed by a streamer."""

    def __init__(self, model: str, threads: int) -> None:
        import onnxruntime as ort
        import torch
        from optimum.onnxruntime import ORTModelForCausalLM

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        torch.set_num_threads(threads)
        self.torch = torch
        self.model = ORTModelForCausalLM.from_pretrained(model, session_options=options)

    def token_times(self, rows: list[list[int]], new_tokens: int) -> list[float]:
        ids = self.torch.tensor(rows)
        return streamed_times(lambda streamer: self.model.generate(
            ids, attention_mask=self.torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, streamer=streamer))


if __name__ == "__main__":
    main(OptimumEngine)
