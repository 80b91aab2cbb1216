"""Output folders are written all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxforge.errors import BadInput
from onnxforge.staging import staged_folder


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_success_renames_the_staging_folder_into_place(tmp_path: Path) -> None:
    with staged_folder(tmp_path / "out") as stage:
        (stage / "model.onnx").write_text("graph")
    assert (tmp_path / "out" / "model.onnx").read_text() == "graph"
    assert _leftovers(tmp_path) == ["out"]


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_or_ctrl_c_leaves_nothing(tmp_path: Path, failure: BaseException) -> None:
    with pytest.raises(type(failure)), staged_folder(tmp_path / "out") as stage:
        (stage / "model.onnx_data").write_bytes(b"half")
        raise failure
    assert _leftovers(tmp_path) == []


def test_an_existing_folder_needs_force_and_stays_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BadInput, match="already exists: pass --force"), staged_folder(out):
        pass
    assert (out / "keep.txt").read_text() == "mine"


def test_force_replaces_the_old_folder_only_at_the_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_folder(out, force=True) as stage:
        assert (out / "old.txt").exists()
        (stage / "new.txt").write_text("new")
    assert _leftovers(out) == ["new.txt"] and _leftovers(tmp_path) == ["out"]


def test_an_output_under_a_file_is_unwritable(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(BadInput, match="not a writable folder"), staged_folder(tmp_path / "a_file" / "out"):
        pass
