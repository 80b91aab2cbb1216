"""One generation request inside the serving engine: settings, progress, token choice, and its events."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from onnxforge.errors import BadInput
from onnxforge.runtime.sampling import SamplingSettings, next_tokens
from onnxforge.runtime.stream import TextStream

STOP, LENGTH, CANCELLED, ERROR = "stop", "length", "cancelled", "error"
_NOT_READ = np.zeros(1, dtype=bool)  # the seen-tokens argument when there is no repetition penalty


@dataclass(frozen=True)
class RequestSettings:
    """What a client asked for: how many tokens, how to choose them, where to stop, which log-probabilities.

    presence_penalty / frequency_penalty follow OpenAI: each generated token's logit is lowered by
    `presence` once it has appeared and by `frequency` per time it appeared; `sampling.repetition_penalty`
    (transformers' divide-or-multiply, over prompt and generated tokens) is applied too when set.
    min_tokens keeps the stop ids from being chosen before that many tokens; ignore_eos never stops at them.
    """

    max_tokens: int
    sampling: SamplingSettings = SamplingSettings()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_tokens: int = 0
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: none; k >= 0: the chosen token's and the k most likely ones'

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise BadInput(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise BadInput(f"min_tokens must be between 0 and max_tokens ({self.max_tokens}), got {self.min_tokens}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                raise BadInput(f"{name} must be between -2 and 2, got {getattr(self, name)}")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise BadInput(f"logprobs must be between 0 and 20, got {self.logprobs}")


@dataclass(frozen=True)
class TokenEvent:
    """One new token of a request (token_id None on a final event without one) and the text it completed.

    finish_reason is set on the request's last event: stop, length, cancelled or error.
    """

    token_id: int | None
    text: str
    finish_reason: str | None = None
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()


@dataclass
class Request:
    """A request's prompt, settings and progress; the engine calls `on_event` (from its own thread)."""

    prompt_ids: list[int]
    settings: RequestSettings
    on_event: Callable[[TokenEvent], None]
    stream: TextStream
    request_id: str = ""
    generated: list[int] = field(default_factory=list)
    cancelled: bool = False
    finish_reason: str | None = None
    arrived: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    _rng: np.random.Generator | None = None
    _counts: np.ndarray | None = None
    _seen: np.ndarray | None = None

    @property
    def cache_length(self) -> int:
        """Positions of this request's slot that hold keys and values (the newest token is not fed yet)."""
        return len(self.prompt_ids) + len(self.generated) - 1

    def choose(self, logits: np.ndarray, stop_ids: frozenset[int]) -> TokenEvent:
        """Pick the next token from this request's logits [vocab] and say what it completed."""
        settings = self.settings
        scores = self._penalized(logits, stop_ids)
        seen = self._seen_tokens(logits.shape[-1])
        token = int(next_tokens(scores[None], seen[None], settings.sampling, self._generator())[0])
        self._record(token, logits.shape[-1])
        logprob, top = _logprobs(logits, token, settings.logprobs)
        reason = self._finish_reason(token, stop_ids)
        text = "" if token in stop_ids else self.stream.push(token)
        if self.stream.stopped:
            reason = STOP
        if reason is not None:
            text += self.stream.finish()
            self.finish_reason = reason
        return TokenEvent(token, text, reason, logprob, top)

    def _penalized(self, logits: np.ndarray, stop_ids: frozenset[int]) -> np.ndarray:
        """The logits with the penalties and the min_tokens ban applied (a copy only when one applies)."""
        settings, scores = self.settings, logits
        if self._counts is not None and (settings.presence_penalty or settings.frequency_penalty):
            counts = self._counts
            scores = scores - (settings.presence_penalty * (counts > 0) + settings.frequency_penalty * counts)
        if len(self.generated) < settings.min_tokens and stop_ids:
            scores = scores.copy() if scores is logits else scores
            scores[list(stop_ids)] = -np.inf
        return scores

    def _seen_tokens(self, vocab: int) -> np.ndarray:
        if self.settings.sampling.repetition_penalty == 1:
            return _NOT_READ
        if self._seen is None:
            self._seen = np.zeros(vocab, dtype=bool)
            self._seen[self.prompt_ids] = True
        return self._seen

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self.settings.sampling.seed)
        return self._rng

    def _record(self, token: int, vocab: int) -> None:
        self.generated.append(token)
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if self.settings.presence_penalty or self.settings.frequency_penalty:
            self._counts = np.zeros(vocab, dtype=np.float32) if self._counts is None else self._counts
            self._counts[token] += 1
        if self._seen is not None:
            self._seen[token] = True

    def _finish_reason(self, token: int, stop_ids: frozenset[int]) -> str | None:
        if token in stop_ids and not self.settings.ignore_eos:
            return STOP
        return LENGTH if len(self.generated) >= self.settings.max_tokens else None


def _logprobs(logits: np.ndarray, token: int, top: int | None) -> tuple[float | None, tuple[tuple[int, float], ...]]:
    """The chosen token's log-probability under the model and the `top` most likely (id, log-probability)."""
    if top is None:
        return None, ()
    shifted = logits.astype(np.float64) - logits.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    best = np.argsort(-logprobs)[:top] if top else np.array([], dtype=np.int64)
    return float(logprobs[token]), tuple((int(i), float(logprobs[i])) for i in best)
