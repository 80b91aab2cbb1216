"""Teacher-written training text: sampled from the teacher's export, reproducible, checked by its digest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from onnxforge.cli import main
from onnxforge.errors import BadInput
from onnxforge.passes.calibration import read_texts
from onnxforge.runtime.text import TextCodec
from onnxforge.train.data import training_text
from onnxforge.train.teacher_text import (
    PROVENANCE_FILE,
    TEXT_FILE,
    TeacherTextSettings,
    read_teacher_text,
    write_teacher_text,
)

SETTINGS = TeacherTextSettings(passages=5, prompt_tokens=12, new_tokens=6, batch=2, seed=3)


@pytest.fixture(scope="module")
def teacher_text(export_tiny: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher-text") / "text"
    write_teacher_text(export_tiny("llama"), out, SETTINGS)
    return out


def test_each_row_is_a_passage_opening_continued_by_the_teacher(teacher_text: Path,
                                                                export_tiny: Callable[[str], Path]) -> None:
    codec = TextCodec(export_tiny("llama"))
    rows = read_teacher_text(teacher_text)
    openings = [codec.decode(codec.encode(text)[:12]) for text in read_texts(None)[:5]]
    assert len(rows) == 5
    assert all(row.startswith(opening) and len(row) > len(opening) for row, opening in zip(rows, openings, strict=True))
    provenance = json.loads((teacher_text / PROVENANCE_FILE).read_text())
    assert provenance["sha256"] == hashlib.sha256((teacher_text / TEXT_FILE).read_bytes()).hexdigest()
    assert provenance["rows"] == 5 and provenance["prompt_tokens"] == 5 * 12 and 5 <= provenance["new_tokens"] <= 30
    assert provenance["settings"]["seed"] == 3 and provenance["teacher"] == "tiny:llama"


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_text(
        teacher_text: Path, export_tiny: Callable[[str], Path], tmp_path: Path) -> None:
    write_teacher_text(export_tiny("llama"), tmp_path / "again", SETTINGS)
    other = TeacherTextSettings(**{**SETTINGS.__dict__, "seed": 4})
    write_teacher_text(export_tiny("llama"), tmp_path / "other", other)
    original = (teacher_text / TEXT_FILE).read_bytes()
    assert (tmp_path / "again" / TEXT_FILE).read_bytes() == original
    assert (tmp_path / "other" / TEXT_FILE).read_bytes() != original


def test_training_text_takes_a_teacher_text_folder_and_refuses_a_changed_one(teacher_text: Path,
                                                                             tmp_path: Path) -> None:
    added = training_text([teacher_text])
    assert set(read_teacher_text(teacher_text)) <= set(added.passages)
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / PROVENANCE_FILE).write_bytes((teacher_text / PROVENANCE_FILE).read_bytes())
    (changed / TEXT_FILE).write_text(json.dumps({"text": "edited by hand"}) + "\n")
    with pytest.raises(BadInput, match="does not match the sha256"):
        training_text([changed])


def test_the_shipped_teacher_text_matches_its_provenance() -> None:
    from onnxforge.data import data_file

    folder = data_file("teacher_text").parent
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    rows = read_teacher_text(folder)
    assert provenance["teacher"] == "smollm2-135m" and len(rows) == provenance["rows"] >= 1000
    kept = training_text([folder])
    assert kept.dropped == training_text().dropped


@pytest.mark.parametrize(("flag", "message"), [("--passages=0", "--passages must be >= 1"),
                                               ("--passages=100000", "more than the"),
                                               ("--temperature=0", "--temperature must be > 0")])
def test_bad_settings_are_one_line_and_write_nothing(export_tiny: Callable[[str], Path], tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str], flag: str, message: str) -> None:
    out = tmp_path / "out"
    teacher = export_tiny("llama")
    capfd.readouterr()
    status = main(["teacher-text", str(teacher), str(out), flag])
    err = capfd.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []
