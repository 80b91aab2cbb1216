"""torch eager as a bench engine: transformers' generate on the source model, timed by a streamer."""

from __future__ import annotations

from onnxforge.eval.protocol import main, streamed_times


class TorchEngine:
    """fp32 eager `generate`, greedy, exactly N new tokens."""

    def __init__(self, model: str, threads: int) -> None:
        import torch

        from onnxforge.models import load_source

        torch.set_num_threads(threads)
        self.torch, self.model = torch, load_source(model).model

    def token_times(self, rows: list[list[int]], new_tokens: int) -> list[float]:
        ids = self.torch.tensor(rows)

        def generate(streamer: object) -> None:
            with self.torch.no_grad():
                self.model.generate(ids, attention_mask=self.torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=new_tokens, min_new_tokens=new_tokens, streamer=streamer)

        return streamed_times(generate)


if __name__ == "__main__":
    main(TorchEngine)
