"""The torch side of `eval --reference`: the same scoring over a torch model (needs onnxforge[export])."""

from __future__ import annotations

import numpy as np

from onnxforge.eval.scoring import LogitsFn


def torch_logits(source: str, threads: int = 0) -> LogitsFn:
    """Logits of a right-padded batch from the torch model of `source` (fp32, no grad)."""
    import torch

    from onnxforge.models import load_source

    if threads:
        torch.set_num_threads(threads)
    model = load_source(source).model

    def logits(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            output = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        return output.logits.float().numpy()

    return logits
