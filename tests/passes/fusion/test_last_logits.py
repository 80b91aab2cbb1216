"""The fused graph's optional `logits_to_keep` input: the vocabulary projection at each row's last tokens only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from onnxforge.folder import ATTENTION_MASK, INPUT_IDS, LOGITS, LOGITS_TO_KEEP, POSITION_IDS
from onnxforge.passes.fusion.fuse import FuseConfig
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.loop import pad_rows
from tests.passes.fusion.test_fuse import ATOL, ROWS, fuse_folder, op_counts


def _logits(folder: Path, right: bool, keep: int | None) -> tuple[np.ndarray, list[int]]:
    """Logits of a prefill of ROWS (left- or right-padded) with `logits_to_keep` fed or not; the row lengths."""
    ids, mask = pad_rows(ROWS, right=right)
    positions = np.clip(mask.cumsum(axis=1) - 1, 0, None) if not right else np.broadcast_to(
        np.arange(ids.shape[1]), ids.shape).astype(np.int64)
    decoder = Decoder(folder)
    feeds = {INPUT_IDS: ids, ATTENTION_MASK: mask, POSITION_IDS: positions,
             **dict(zip(decoder.layout.past_names(), decoder.empty_past(len(ROWS))))}
    if keep is not None:
        feeds[LOGITS_TO_KEEP] = np.array(keep, np.int64)
    return decoder.session.run([LOGITS], feeds)[0], [len(row) for row in ROWS]


@pytest.fixture(scope="module", params=["llama", "gpt2", "gemma2", "granite"])
def pair(request: pytest.FixtureRequest, export_tiny: Callable[[str], Path],
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(export, fused export) of an architecture whose head is plain (llama), follows a reshape (gpt2), is
    soft-capped after it (gemma2) or scaled (granite)."""
    folder = export_tiny(request.param)
    target = tmp_path_factory.mktemp("last") / request.param
    fuse_folder(folder, target)
    return folder, target


def test_by_default_every_position_is_computed_as_before(pair: tuple[Path, Path]) -> None:
    original, fused = pair
    expected, _ = _logits(original, right=False, keep=None)
    for keep in (None, 0):
        got, _ = _logits(fused, right=False, keep=keep)
        assert got.shape == expected.shape
        real = pad_rows(ROWS)[1].astype(bool)
        np.testing.assert_allclose(got[real], expected[real], atol=ATOL)


@pytest.mark.parametrize("keep", [1, 3])
def test_the_last_k_positions_of_a_left_padded_batch(pair: tuple[Path, Path], keep: int) -> None:
    original, fused = pair
    expected, _ = _logits(original, right=False, keep=None)
    got, _ = _logits(fused, right=False, keep=keep)
    assert got.shape == (len(ROWS), keep, expected.shape[2])
    np.testing.assert_allclose(got, expected[:, -keep:], atol=ATOL)


def test_each_right_padded_row_gets_its_own_last_token(pair: tuple[Path, Path]) -> None:
    original, fused = pair
    expected, lengths = _logits(original, right=True, keep=None)
    got, _ = _logits(fused, right=True, keep=1)
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(got[row, 0], expected[row, length - 1], atol=ATOL, err_msg=f"row {row}")


def test_tools_that_do_not_know_the_input_do_not_see_it(pair: tuple[Path, Path]) -> None:
    original, fused = pair
    plain = ort.InferenceSession(str(original / "model.onnx"), providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(str(fused / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i.name for i in plain.get_inputs()]
    assert [i.name for i in session.get_overridable_initializers()] == [LOGITS_TO_KEEP]
    assert Decoder(fused).last_token_only and not Decoder(original).last_token_only


def test_it_can_be_left_out(export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    model, entry = fuse_folder(export_tiny("llama"), tmp_path / "m", FuseConfig(last_logits=False))
    assert LOGITS_TO_KEEP not in [v.name for v in model.graph.inputs] and op_counts(model)["GatherND"] == 0
    assert "last_logits" not in entry["rules_applied"]
