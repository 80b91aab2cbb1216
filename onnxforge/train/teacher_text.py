"""Training text written by the teacher: sampled continuations of the shipped calibration passages.

Self-distillation data in the manner of LLM-QAT: the teacher's export continues the opening tokens
of each calibration passage, sampled from its own distribution with a fixed seed, through ONNX
Runtime (no torch). The output folder holds `continuations.jsonl` (one `text` per passage: the
opening and its continuation) and `provenance.json` (teacher and its passes, the settings, token
counts and the sha256 of the JSON-lines file), so the text can be shipped, checked and
regenerated. `distill --text-file` reads such a folder after checking its digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onnxforge.errors import BadInput
from onnxforge.folder import read_manifest
from onnxforge.passes.calibration import read_texts
from onnxforge.runtime.generate import GenerationSettings, Generator
from onnxforge.runtime.sampling import SamplingSettings
from onnxforge.staging import check_output, staged_folder

TEXT_FILE = "continuations.jsonl"
PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class TeacherTextSettings:
    """How many passages to continue, from how many of their tokens, by how many, sampled how."""

    passages: int = 1024
    prompt_tokens: int = 32
    new_tokens: int = 96
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch: int = 16

    def __post_init__(self) -> None:
        for name in ("passages", "prompt_tokens", "new_tokens", "batch"):
            if getattr(self, name) < 1:
                raise BadInput(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        available = len(read_texts(None))
        if self.passages > available:
            raise BadInput(f"--passages {self.passages} is more than the {available} shipped calibration passages")
        if not self.temperature > 0:
            raise BadInput(f"--temperature must be > 0 (the teacher's text is sampled), got {self.temperature}")


def write_teacher_text(teacher_dir: Path, out: Path, settings: TeacherTextSettings, force: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Continue the first `settings.passages` calibration passages with the teacher into OUT; return the provenance."""
    if out.resolve() == teacher_dir.resolve():
        raise BadInput("OUT must differ from TEACHER_DIR: teacher-text writes a new folder")
    check_output(out, force)
    generator, manifest = Generator(teacher_dir), read_manifest(teacher_dir)
    prompts = _prompts(generator, settings)
    generation = GenerationSettings(settings.new_tokens, SamplingSettings(
        temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed))
    with staged_folder(out, force) as stage:
        texts, new_tokens = [], 0
        for start in range(0, len(prompts), settings.batch):
            batch = prompts[start : start + settings.batch]
            completions = generator.run(batch, generation).complete().completions
            # opening and continuation decoded together (no character split at the join), less a character the
            # last token left incomplete
            texts += [generator.codec.decode([*ids, *done.token_ids]).rstrip("\ufffd")
                      for ids, done in zip(batch, completions, strict=True)]
            new_tokens += sum(len(done.token_ids) for done in completions)
            if progress:
                progress(len(texts), len(prompts))
        text = "".join(json.dumps({"text": row}, ensure_ascii=False) + "\n" for row in texts)
        (stage / TEXT_FILE).write_text(text, encoding="utf-8")
        provenance = {
            "teacher": manifest.get("source", {}).get("name", str(teacher_dir)),
            "teacher_passes": [record["pass"] for record in manifest.get("passes", [])],
            "settings": asdict(settings),
            "passages_source": "calibration/boolq_passages.jsonl (in file order)",
            "rows": len(texts),
            "prompt_tokens": sum(len(ids) for ids in prompts),
            "new_tokens": new_tokens,
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
        (stage / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return provenance


def _prompts(generator: Generator, settings: TeacherTextSettings) -> list[list[int]]:
    passages = read_texts(None)[: settings.passages]
    return [generator.codec.encode(text)[: settings.prompt_tokens] for text in passages]


def read_teacher_text(folder: Path) -> list[str]:
    """The texts of a teacher-text folder, after checking them against the digest in its provenance."""
    provenance_path, text_path = folder / PROVENANCE_FILE, folder / TEXT_FILE
    if not provenance_path.is_file() or not text_path.is_file():
        raise BadInput(f"'{folder}' is not a teacher-text folder: it needs {TEXT_FILE} and {PROVENANCE_FILE} "
                       "(write one with `onnxforge teacher-text`)")
    try:
        expected = json.loads(provenance_path.read_text(encoding="utf-8"))["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise BadInput(f"{provenance_path} is not a provenance file with a 'sha256': regenerate the folder") from None
    if hashlib.sha256(text_path.read_bytes()).hexdigest() != expected:
        raise BadInput(f"{text_path} does not match the sha256 in {PROVENANCE_FILE}: it was changed; regenerate it")
    return read_texts(str(text_path))
