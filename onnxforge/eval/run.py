"""`onnxforge eval`: run one task on an exported folder (ONNX Runtime) and optionally on its torch source."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from onnxforge.errors import BadInput
from onnxforge.eval import tasks
from onnxforge.eval.scoring import Request, Score, Scorer, whole_sequence_scorer
from onnxforge.folder import check_folder
from onnxforge.progress import console

RESULTS_FILE = "eval.jsonl"
Builder = Callable[[tasks.Encode, int | None], tuple[list[Request], dict[str, Any]]]


@dataclass(frozen=True)
class Task:
    """How to build a task's requests and turn its scores into metrics."""

    build: Builder
    metrics: Callable[..., dict[str, float]]
    settings: dict[str, Any]


TASKS = {
    "wikitext2": Task(lambda enc, lim: (tasks.wikitext2_requests(enc, lim), {}), tasks.wikitext2_metrics,
                      {"window": tasks.WINDOW, "stride": tasks.STRIDE, "bos": False, "limit_counts": "windows"}),
    "arc_easy": Task(lambda enc, lim: _with_questions(*tasks.arc_easy_requests(enc, lim)), tasks.arc_easy_metrics,
                     {"shots": 0, "prompt": "Question: {question}\\nAnswer:", "acc_norm": "per UTF-8 byte",
                      "limit_counts": "questions"}),
    "lambada": Task(lambda enc, lim: (tasks.lambada_requests(enc, lim), {}), tasks.lambada_metrics,
                    {"variant": "openai", "acc": "greedy, every token of the last word", "limit_counts": "texts"}),
}


def _with_questions(requests: list[Request], questions: list[dict[str, Any]]) -> tuple[list[Request], dict[str, Any]]:
    return requests, {"questions": questions}


def check_task(name: str, limit: int | None) -> Task:
    """The task called `name`; BadInput for unknown names and a limit below 1."""
    if name not in TASKS:
        raise BadInput(f"unknown task '{name}': choose from {', '.join(TASKS)}")
    if limit is not None and limit < 1:
        raise BadInput(f"--limit must be >= 1 (got {limit}); leave it out to evaluate everything")
    return TASKS[name]


def evaluate(
    name: str, scorer: Scorer, encode: tasks.Encode, limit: int | None, token_budget: int, label: str
) -> dict[str, Any]:
    """Score the task with `scorer`; returns metrics, n, settings and seconds."""
    task = check_task(name, limit)
    start = time.perf_counter()
    requests, extra = task.build(encode, limit)
    scores = _score_with_progress(scorer, requests, token_budget, f"{name} ({label})")
    metrics = task.metrics(scores, **extra)
    n = len(extra.get("questions", requests))
    settings = {**task.settings, "limit": limit, "token_budget": token_budget}
    return {"task": name, "n": n, **metrics, "settings": settings, "seconds": round(time.perf_counter() - start, 1)}


def _score_with_progress(scorer: Scorer, requests: list[Request], budget: int, label: str) -> list[Score]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(label, total=len(requests))
        return scorer(requests, budget, lambda n: progress.advance(bar, n))


def evaluate_folder(folder: Path, name: str, limit: int | None, threads: int, token_budget: int) -> dict[str, Any]:
    """The task on `folder` through ONNX Runtime (no torch), shared contexts run once (eval/shared_context.py)."""
    from onnxforge.eval.shared_context import shared_context_scorer
    from onnxforge.runtime.decoder import Decoder
    from onnxforge.runtime.session import SessionSettings
    from onnxforge.runtime.text import TextCodec

    check_task(name, limit)
    check_folder(folder)
    codec = TextCodec(folder)
    scorer = shared_context_scorer(Decoder(folder, SessionSettings.with_threads(threads)))
    return evaluate(name, scorer, codec.encode, limit, token_budget, "onnxruntime")


def evaluate_reference(folder: Path, source: str, name: str, limit: int | None, threads: int,
                       token_budget: int) -> dict[str, Any]:
    """The same task on the torch model of `source`, tokenized by the folder's tokenizer."""
    from onnxforge.eval.reference import torch_logits
    from onnxforge.runtime.text import TextCodec

    scorer = whole_sequence_scorer(torch_logits(source, threads))
    return evaluate(name, scorer, TextCodec(folder).encode, limit, token_budget, "torch")


def evaluate_with_reference(folder: Path, name: str, limit: int | None, threads: int, token_budget: int,
                            reference: str | None) -> list[dict[str, Any]]:
    """The task on `folder` (engine onnxruntime) and, when `reference` is given, on that torch source."""
    results = [{**evaluate_folder(folder, name, limit, threads, token_budget),
                "model": str(folder.resolve()), "engine": "onnxruntime"}]
    if reference:
        figures = evaluate_reference(folder, reference, name, limit, threads, token_budget)
        results.append({**figures, "model": reference, "engine": "torch"})
    return results


def append_results(run_dir: Path, results: list[dict[str, Any]], command: str) -> None:
    """Add one line per result (with the command that produced it) to RUN_DIR/eval.jsonl, for report."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / RESULTS_FILE).open("a", encoding="utf-8") as lines:
        lines.writelines(json.dumps({**result, "command": command}) + "\n" for result in results)
