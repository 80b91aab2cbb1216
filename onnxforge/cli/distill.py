"""`onnxforge distill TEACHER STUDENT OUT`: recover what compression cost by training against the teacher."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.errors import EXIT_OK, missing_extra


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The distill sub-command."""
    distill = commands.add_parser("distill", help="train a compressed folder against its teacher (knowledge "
                                  "distillation), export it back and check it")
    distill.add_argument("teacher", metavar="TEACHER", help="the source the student was exported from "
                         "(a named default, a Hugging Face folder, a .gguf)")
    distill.add_argument("student", metavar="STUDENT", help="a folder compressed from it by structural passes")
    distill.add_argument("out", metavar="OUT", help="output folder (written all or nothing)")
    distill.add_argument("--tokens", type=int, default=100_000, help="training tokens (default %(default)s)")
    distill.add_argument("--minutes", type=float, help="stop training after this many minutes and export")
    distill.add_argument("--blockwise-share", type=float, default=0.25,
                         help="share of the tokens for the block-wise stage (default %(default)s)")
    distill.add_argument("--learning-rate", type=float, default=1e-4, help="peak learning rate (default %(default)s)")
    distill.add_argument("--sequence-length", type=int, default=256, help="tokens per row (default %(default)s)")
    distill.add_argument("--batch-rows", type=int, default=4, help="rows per step (default %(default)s)")
    distill.add_argument("--temperature", type=float, default=1.0, help="KD temperature (default %(default)s)")
    distill.add_argument("--stream-weight", type=float, help="weight of the hidden-state loss in end-to-end KD "
                         "(default 1 where layers were dropped or factorised, else 0)")
    distill.add_argument("--precision", default="fp32", help="fp32 or bf16 (autocast) (default %(default)s)")
    distill.add_argument("--quantize", metavar="int4",
                         help="quantisation-aware training: train through the int4 grid and write the int4 folder")
    distill.add_argument("--text-file", action="append", default=[], metavar="FILE|DIR",
                         help="more training text: a .jsonl ('text'), a .txt, or a teacher-text folder (its sha256 "
                              "is checked; the default model's ships in onnxforge/data/teacher-text/smollm2-135m); "
                              "evaluation text is removed from it")
    distill.add_argument("--checkpoint-minutes", type=float, default=5.0,
                         help="minutes between checkpoints in OUT.checkpoint (default %(default)s)")
    distill.add_argument("--resume", action="store_true", help="continue from OUT.checkpoint")
    distill.add_argument("--force", action="store_true", help="replace OUT if it exists")
    distill.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Distil, then print what the student became."""
    try:
        from onnxforge.train.distill import DistillRun, distill
        from onnxforge.train.loop import TrainSettings
        from onnxforge.train.student import read_student_manifest, stream_weight_default
    except ImportError as error:
        raise missing_extra(error, "distill", "train") from None

    weight = args.stream_weight
    if weight is None:
        weight = stream_weight_default(read_student_manifest(Path(args.student)))
    settings = TrainSettings(
        tokens=args.tokens, blockwise_share=args.blockwise_share, sequence_length=args.sequence_length,
        batch_rows=args.batch_rows, learning_rate=args.learning_rate, blockwise_learning_rate=args.learning_rate,
        temperature=args.temperature, stream_weight=weight, precision=args.precision,
        quantize=args.quantize)
    manifest = distill(DistillRun(args.teacher, Path(args.student), Path(args.out), settings, args.minutes,
                                  args.checkpoint_minutes, args.resume, args.force, tuple(args.text_file)))
    record = next(r for r in reversed(manifest["passes"]) if r["pass"] == "distill")
    stages = {}
    for point in record["curve"]:
        stages.setdefault(point["stage"], []).append(point["loss"])
    losses = "; ".join(f"{stage} loss {values[0]:.4f} -> {values[-1]:.4f}" for stage, values in stages.items())
    parity = record["parity"]
    kept = f"embedding cosine {parity['min_embedding_cosine']:.6f}" if "min_embedding_cosine" in parity else \
        f"|Δ logits| {parity['worst_abs_logits_diff']:.1e}"
    print(f"distilled {record['tokens_trained']} tokens in {record['train_seconds']:.0f} s ({losses}); "
          f"parity with the trained student: {kept}; wrote {args.out}")
    return EXIT_OK
