"""The evaluation and calibration text shipped inside the package (sources and licences: README.md here).

Evaluation files are never used for calibration or training; calibration reads only `calibration`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onnxforge.errors import BadInput

DATA_DIR = Path(__file__).resolve().parent
FILES = {
    "wikitext2": "wikitext-2-raw/wiki.test.raw",
    "arc_easy": "arc_easy/validation.jsonl",
    "lambada": "lambada_openai/test.jsonl",
    "calibration": "calibration/boolq_passages.jsonl",
    "teacher_text": "teacher-text/smollm2-135m/continuations.jsonl",
}


def data_file(name: str) -> Path:
    """Path of a shipped data file; BadInput when the installation lacks it."""
    path = DATA_DIR / FILES[name]
    if not path.is_file():
        raise BadInput(f"data file {path} is missing: reinstall onnxforge (the package ships its evaluation data)")
    return path


def read_jsonl(name: str) -> list[dict[str, Any]]:
    """All rows of a shipped JSON-lines file."""
    with data_file(name).open(encoding="utf-8") as rows:
        return [json.loads(line) for line in rows if line.strip()]
