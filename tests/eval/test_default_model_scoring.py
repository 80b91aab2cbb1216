"""Shared-context scoring on the real default model's int4 graph equals whole-sequence scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from onnxforge.eval import tasks
from onnxforge.eval.scoring import onnx_logits, score_requests
from onnxforge.eval.shared_context import score_sharing_contexts
from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import load_recipe
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.text import TextCodec
from tests.passes.helpers import SMALL_CALIBRATION

pytestmark = pytest.mark.slow


def test_int4_arc_scores_through_shared_contexts_equal_whole_sequences(
    default_export: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    folder = tmp_path / "int4"  # MatMulNBits at accuracy_level 4: a single new token would round differently
    compress(default_export[0], folder, load_recipe("int4"), SMALL_CALIBRATION)
    decoder = Decoder(folder)
    requests, _ = tasks.arc_easy_requests(TextCodec(folder).encode, 40)
    whole = [s.logprob for s in score_requests(onnx_logits(decoder), requests)]
    shared = [s.logprob for s in score_sharing_contexts(decoder, requests)]
    np.testing.assert_allclose(shared, whole, rtol=0, atol=1e-4)
