"""Text in, text out: prompts through the chat template, a batched token loop, streamed text per row."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxforge.errors import BadInput
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.loop import FINISHED, LoopStats, TokenLoop
from onnxforge.runtime.sampling import SamplingSettings
from onnxforge.runtime.session import SessionSettings
from onnxforge.runtime.stream import TextStream
from onnxforge.runtime.text import TextCodec

log = logging.getLogger("onnxforge.runtime")
Message = dict[str, str]


@dataclass(frozen=True)
class GenerationSettings:
    """How much to generate, how to pick tokens, where to stop, and what to do with long prompts."""

    max_new_tokens: int = 256
    sampling: SamplingSettings = SamplingSettings()
    stop_strings: tuple[str, ...] = ()
    truncate_prompt: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise BadInput(f"max new tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class Completion:
    """One row's result: the new text and ids, and why it ended (stop, stop_string, length)."""

    prompt_tokens: int
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"


class Generator:
    """A model folder opened for generation: session, tokenizer, chat template, stop ids."""

    def __init__(self, model_dir: str | Path, settings: SessionSettings = SessionSettings()) -> None:
        self.codec = TextCodec(model_dir)
        self.decoder = Decoder(model_dir, settings)
        self.stop_ids = frozenset(self.codec.stop_ids())

    def prompt_ids(self, prompt: str | list[Message], raw: bool = False) -> list[int]:
        """Token ids of a prompt: a text (wrapped as one user turn unless `raw`) or a list of chat messages."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if not messages or not messages[-1]["content"].strip():
            raise BadInput("the prompt is empty: give some text to answer")
        if raw and isinstance(prompt, str):
            return self.codec.encode(prompt)
        return self.codec.encode(self.codec.render_chat(messages))

    def run(self, rows: list[list[int]], settings: GenerationSettings) -> GenerationRun:
        """A run over already-encoded prompts; iterate it for text deltas, or call `.complete()`."""
        return GenerationRun(self, [self._fit(ids, settings) for ids in rows], settings)

    def generate(self, prompts: list[str], settings: GenerationSettings, raw: bool = False) -> GenerationRun:
        """Generate for all prompts in one batch and return the finished run (completions and stats)."""
        return self.run([self.prompt_ids(prompt, raw) for prompt in prompts], settings).complete()

    def _fit(self, ids: list[int], settings: GenerationSettings) -> list[int]:
        context = self.decoder.context_length
        if context is None or len(ids) + 1 <= context:
            return ids
        if not settings.truncate_prompt:
            raise BadInput(f"the prompt has {len(ids)} tokens but the model's context is {context}: "
                           "shorten it, or pass --truncate to keep its last tokens")
        keep = max(1, context - settings.max_new_tokens)
        log.warning("prompt truncated from %d to its last %d tokens to fit the context of %d", len(ids), keep, context)
        return ids[-keep:]


class GenerationRun:
    """Iterating yields, per step, the new text of every row ('' when none); then `completions` is final."""

    def __init__(self, generator: Generator, rows: list[list[int]], settings: GenerationSettings) -> None:
        room = (generator.decoder.context_length or 1 << 62) - max(len(row) for row in rows)
        self.loop = TokenLoop(generator.decoder, rows, min(settings.max_new_tokens, room),
                              settings.sampling, generator.stop_ids)
        self.streams = [TextStream(generator.codec.decode, settings.stop_strings) for _ in rows]
        self.completions = [Completion(prompt_tokens=len(row)) for row in rows]
        self.stop_ids = generator.stop_ids
        self.provider = generator.decoder.provider

    @property
    def stats(self) -> LoopStats:
        """Timing of the token loop (prefill, decode, time inside onnxruntime)."""
        return self.loop.stats

    def __iter__(self) -> Iterator[list[str]]:
        for tokens in self.loop:
            yield [self._take(row, int(token)) for row, token in enumerate(tokens)]
        yield [self._finish(row) for row in range(len(self.streams))]

    def to_json(self) -> dict[str, Any]:
        """Texts, ids, finish reasons and timing: one row's fields at the top level, or `results` for a batch."""
        rows = [
            {"text": c.text, "token_ids": c.token_ids, "prompt_tokens": c.prompt_tokens,
             "new_tokens": len(c.token_ids), "finish_reason": c.finish_reason}
            for c in self.completions
        ]
        stats = self.stats
        timing = {"ttft_s": round(stats.prefill_s, 4), "decode_tokens_per_s": round(stats.decode_tokens_per_s, 2),
                  "overhead_ms_per_step": round(stats.overhead_s_per_step * 1000, 3), "provider": self.provider}
        return {**rows[0], **timing} if len(rows) == 1 else {"results": rows, "batch": len(rows), **timing}

    def complete(self) -> GenerationRun:
        """Run to the end without looking at the deltas."""
        for _ in self:
            pass
        return self

    def _take(self, row: int, token: int) -> str:
        if token == FINISHED:
            return ""
        completion, stream = self.completions[row], self.streams[row]
        completion.token_ids.append(token)
        if token in self.stop_ids:
            completion.finish_reason = "stop"
            return ""
        delta = stream.push(token)
        if stream.stopped:
            completion.finish_reason = "stop_string"
            self.loop.stop_row(row)
        return delta

    def _finish(self, row: int) -> str:
        delta = self.streams[row].finish()
        self.completions[row].text = self.streams[row].text
        return delta
