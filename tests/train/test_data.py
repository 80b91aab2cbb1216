"""Training text never holds evaluation text."""

from __future__ import annotations

import json
from pathlib import Path

from onnxforge.data import data_file, read_jsonl
from onnxforge.train.data import evaluation_ngrams, ngrams, training_text


def test_the_shipped_training_text_shares_no_13_words_with_an_evaluation_set() -> None:
    text = training_text()
    evaluation = evaluation_ngrams()
    assert len(text.passages) > 2000
    assert all(evaluation.isdisjoint(ngrams(passage)) for passage in text.passages)


def test_evaluation_text_added_for_training_is_dropped(tmp_path: Path) -> None:
    wiki = data_file("wikitext2").read_text(encoding="utf-8").split("\n")
    planted = [next(line for line in wiki if len(line.split()) > 40), read_jsonl("lambada")[7]["text"]]
    clean = "A passage written for this test about rivers, bridges and the people who build them."
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps({"text": t}) + "\n" for t in [*planted, clean]), encoding="utf-8")
    base, added = training_text(), training_text([extra])
    assert added.dropped == base.dropped + 2
    assert clean in added.passages and not any(p in added.passages for p in planted)
    assert added.sha256 != base.sha256
