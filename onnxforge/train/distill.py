"""`onnxforge distill TEACHER STUDENT OUT`: train a compressed folder against its teacher, export it back, check it.

1. Load the teacher (any source `export` reads, an encoder included) and rebuild the student
   folder in torch; the rebuilt student must reproduce the folder's own logits (an encoder's
   hidden states) in ONNX Runtime. An encoder trains towards the teacher's sentence embeddings
   (`encoder.py`).
2. Train (block-wise, then end-to-end KD) on decontaminated shipped text, with a checkpoint
   beside OUT (`OUT.checkpoint`) every few minutes; `--resume` continues from it bit for bit.
3. Export the trained student through the exporter into a staged OUT with the student's side
   files and records plus a `distill` record, check parity against the trained torch student,
   rename into place and delete the checkpoint.
With `quantize` (quantisation-aware training), the student trains through the int4 grid
(`fake_quant.py`); its float weights are exported and checked as above into a hidden folder
beside OUT, and the `int4` recipe then writes OUT: its codes are those the training saw.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxforge.errors import BadInput, OnnxforgeError, ParityError
from onnxforge.exporter.defaults import DEFAULT_OPSET
from onnxforge.exporter.export import peak_rss_bytes
from onnxforge.exporter.trace import trace_to_onnx
from onnxforge.exporter.validate import check_parity
from onnxforge.folder import EXTERNAL_DATA_FILE, MODEL_FILE, folder_bytes, read_tokenizer, write_manifest
from onnxforge.models import LoadedModel, ModelFacts, facts_from_config, load_source
from onnxforge.models.encoders import EncoderFacts, LoadedEncoder, is_encoder_source, load_encoder
from onnxforge.passes.base import parameter_count
from onnxforge.passes.calibration import CalibrationSettings
from onnxforge.passes.pipeline import compress, copy_side_files
from onnxforge.passes.recipe import load_recipe
from onnxforge.progress import Steps, console
from onnxforge.staging import check_output, staged_folder
from onnxforge.train.checkpoint import checkpoint_folder, read_checkpoint
from onnxforge.train.data import token_rows, training_text
from onnxforge.train.encoder import EncoderTrainer, encoder_rebuild_error, encoder_rows, export_encoder_student
from onnxforge.train.fake_quant import QUANTIZE_CHOICES, add_fake_quant, remove_fake_quant
from onnxforge.train.loop import PRECISIONS, Trainer, TrainSettings
from onnxforge.train.student import REBUILD_TOLERANCE, Student, load_student, rebuild_error
from onnxforge.train.training_bar import TrainingBar


@dataclass(frozen=True)
class DistillRun:
    """What to distil into where, and for how long."""

    teacher: str
    student: Path
    out: Path
    settings: TrainSettings
    minutes: float | None = None
    checkpoint_minutes: float = 5.0
    resume: bool = False
    force: bool = False
    text_files: tuple[str, ...] = ()


def distill(run: DistillRun) -> dict[str, Any]:
    """Train, export and check the student; return the new folder's manifest."""
    saved = _check_run(run)
    steps = Steps()
    encoder = is_encoder_source(run.teacher)
    with steps.step("load", f"load the teacher {run.teacher} and rebuild the student"):
        teacher = load_encoder(run.teacher) if encoder else load_source(run.teacher)
        student = load_student(run.student, teacher)
        text = training_text(run.text_files)
        rows = (encoder_rows if encoder else token_rows)(read_tokenizer(run.student), text.passages,
                                                         run.settings.sequence_length)
        _check_rebuilt(student, run.student, rows[0], encoder)
        if run.settings.quantize:
            _check_quantizable(student, run.student, encoder)
            add_fake_quant(student.model)
    trainer = EncoderTrainer(teacher, student, rows, run.settings) if encoder else \
        Trainer(teacher.model, student, rows, run.settings)
    checkpoints = checkpoint_folder(run.out)
    state = _run_state(run, text.sha256, len(rows))
    if saved is not None:
        _check_same_run(checkpoints, saved, state)
        trainer.resume(checkpoints)
    _train(trainer, run, checkpoints, state)
    remove_fake_quant(student.model)
    state = state | {"text_passages_dropped": text.dropped}
    if not run.settings.quantize:
        manifest = _export(student, teacher, trainer, state, run.student, run.out, run.force, steps)
    else:
        floats = run.out.parent / f".{run.out.name}.float"
        try:
            _export(student, teacher, trainer, state, run.student, floats, True, steps)
            manifest = compress(floats, run.out, load_recipe(run.settings.quantize), CalibrationSettings(), run.force)
        finally:
            shutil.rmtree(floats, ignore_errors=True)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return manifest


def _export(student: Student, teacher: LoadedModel | LoadedEncoder, trainer: Trainer, state: dict[str, Any],
            source: Path, out: Path, force: bool, steps: Steps) -> dict[str, Any]:
    """The trained student as a folder `out` (the student folder's side files, a `distill` record), checked."""
    with staged_folder(out, force) as stage:
        with steps.step("export", "export the trained student and check parity with it"):
            model, facts, parity, difference = _export_graph(student, teacher, source, stage)
        manifest = _manifest(student, model, facts, trainer, state)
        manifest["parity"] = manifest["passes"][-1]["parity"] = parity
        manifest["files_bytes"] = folder_bytes(stage)
        write_manifest(stage, manifest)
        if not parity["passed"]:
            raise ParityError(f"the exported student differs from the trained one ({difference}): nothing was "
                              "written; the checkpoint is kept")
    return manifest


def _export_graph(student: Student, teacher: LoadedModel | LoadedEncoder, source: Path,
                  stage: Path) -> tuple[ir.Model, ModelFacts | EncoderFacts, dict[str, Any], str]:
    """Write the student's graph and side files into `stage`: (graph, facts, parity, the figure parity judged)."""
    if isinstance(teacher, LoadedEncoder):
        model, facts, parity = export_encoder_student(student, teacher, source, stage,
                                                      int(student.manifest.get("opset", DEFAULT_OPSET)))
        copy_side_files(source, stage, facts.to_json())
        return model, facts, parity, f"embedding cosine {parity['min_embedding_cosine']:.6f}"
    facts = facts_from_config(student.model.config)
    model = trace_to_onnx(student.model, facts)
    ir.save(model, stage / MODEL_FILE, external_data=EXTERNAL_DATA_FILE)
    copy_side_files(source, stage, facts.to_json())  # the tokenizer parity reads
    parity = check_parity(stage, LoadedModel(student.model, teacher.tokenizer, facts, str(source), "student"))
    return model, facts, parity, f"worst |Δ logits| {parity['worst_abs_logits_diff']:.2e}"


def _check_run(run: DistillRun) -> dict[str, Any] | None:
    """Refuse bad settings and a missing or corrupt checkpoint before any loading; the checkpoint's state."""
    settings = run.settings
    if settings.tokens < 1:
        raise BadInput(f"--tokens must be at least 1, got {settings.tokens}")
    if settings.precision not in PRECISIONS:
        raise BadInput(f"--precision must be one of {', '.join(PRECISIONS)}, got {settings.precision!r}")
    if settings.quantize is not None and settings.quantize not in QUANTIZE_CHOICES:
        raise BadInput(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {settings.quantize!r}")
    if run.minutes is not None and run.minutes <= 0:
        raise BadInput(f"--minutes must be above 0, got {run.minutes}")
    check_output(run.out, run.force)
    return read_checkpoint(checkpoint_folder(run.out))[2] if run.resume else None


def _check_rebuilt(student: Student, folder: Path, ids: np.ndarray, encoder: bool) -> None:
    error = (encoder_rebuild_error if encoder else rebuild_error)(student, folder, ids[:64])
    if not error <= REBUILD_TOLERANCE:
        what = "hidden states" if encoder else "logits"
        raise OnnxforgeError(f"the student rebuilt in torch differs from '{folder}' (|Δ {what}| {error:.2e} > "
                             f"{REBUILD_TOLERANCE:.0e}): its passes are not all understood by distill")


def _check_quantizable(student: Student, folder: Path, encoder: bool) -> None:
    if encoder:
        raise BadInput("--quantize trains causal LMs through the int4 grid; distil the encoder without it, then "
                       "compress the distilled folder with int8 or int4")
    if student.masks:
        raise BadInput(f"'{folder}' is sparsified: --quantize trains dense weights through the int4 grid; "
                       "quantise the dense student, or distil the sparse one without --quantize")


def _run_state(run: DistillRun, text_sha256: str, rows: int) -> dict[str, Any]:
    return {"teacher": run.teacher, "student": str(run.student), "settings": asdict(run.settings),
            "text_sha256": text_sha256, "rows": rows}


def _train(trainer: Trainer, run: DistillRun, checkpoints: Path, state: dict[str, Any]) -> None:
    """Every remaining step, with a checkpoint every few minutes; Ctrl-C keeps the last one."""
    deadline = None if run.minutes is None else time.perf_counter() + 60 * run.minutes
    last_save = time.perf_counter()
    try:
        with TrainingBar(trainer.total_steps, trainer.steps_done, run.settings.tokens_per_step) as bar:
            for record in trainer.steps(deadline):
                bar.update(record)
                if time.perf_counter() - last_save >= 60 * run.checkpoint_minutes:
                    trainer.checkpoint(checkpoints, state)
                    last_save = time.perf_counter()
    except KeyboardInterrupt:
        if checkpoints.exists():
            console.print(f"the last checkpoint is kept in {checkpoints}: the same command with --resume continues")
        raise
    trainer.checkpoint(checkpoints, state)


def _check_same_run(checkpoints: Path, saved: dict[str, Any], state: dict[str, Any]) -> None:
    differs = [key for key in ("teacher", "settings", "text_sha256", "rows") if saved.get(key) != state[key]]
    if differs:
        raise BadInput(f"the checkpoint in '{checkpoints}' was made with other {', '.join(differs)}: resume with "
                       "the same arguments, or delete it and start afresh")


def _manifest(student: Student, model: ir.Model, facts: ModelFacts | EncoderFacts, trainer: Trainer,
              state: dict[str, Any]) -> dict[str, Any]:
    manifest = dict(student.manifest)
    history = trainer.progress.history
    record = {
        "pass": "distill",
        **state,
        "tokens_trained": trainer.progress.tokens(trainer.settings),
        "steps": len(history),
        "train_seconds": round(trainer.progress.seconds, 1),
        "stopped_early": len(history) < trainer.total_steps,
        "curve": [{k: r[k] for k in r if k in ("stage", "tokens", "loss", "kd", "embedding", "stream", "lr")}
                  for r in history],
    }
    manifest["passes"] = [*manifest.get("passes", []), record]
    manifest["architecture"] = facts.to_json()
    manifest["nodes"] = model.graph.num_nodes()
    manifest["parameters"] = parameter_count(model)
    manifest["peak_rss_bytes"] = peak_rss_bytes()
    return manifest
