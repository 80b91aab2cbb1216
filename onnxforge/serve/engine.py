"""The serving engine: continuous batching over a fused folder's shared KV buffer; no HTTP in here.

Design (after vLLM's scheduler and llama-server's slots, written for our graph):
- Every running request owns one row (slot) of the shared KV buffer; its tokens sit at positions
  0..n-1 of the row. The fused graph reads each row's length from its attention_mask and
  GroupQueryAttention writes each row's new key at that row's next position, so rows at
  different positions share one decode call (`onnxforge.batch_rows = independent`).
- One `step()`: first admit waiting requests while slots are free, prefilled together in calls of
  up to `prefill_chunk` padded prompt tokens (right-padded: each row's tokens from position 0,
  its length from its mask) straight into the next free rows, each call's first tokens sent at
  once, until `prefill_budget` padded tokens were prefilled in this step; then one decode call
  over all running rows. A burst of requests is admitted within a step or two (its last first
  token comes as soon as the prefill compute allows) while a running request waits at most one
  budget's prefill for its next token. A request joins the batch in the step it
  arrives and leaves it in the step it ends (its row is refilled by the last one), so a short
  request never waits for a long one.
- A request cancelled (client gone) is dropped at the start of the next step and its slot freed.
- The queue of waiting requests is bounded: `submit` raises `QueueFull` when every slot is taken
  and `max_queue` requests already wait.
- LongRoPE models (phi3) choose their rotary frequencies from the longest row of a call, so
  rows on both sides of the switch cannot share one: the engine's context stops at the switch.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from onnxforge.errors import BadInput
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.loop import pad_rows
from onnxforge.runtime.stream import TextStream
from onnxforge.serve.requests import CANCELLED, ERROR, Request, RequestSettings, TokenEvent
from onnxforge.serve.slots import SlotMemory

log = logging.getLogger("onnxforge.serve")


class QueueFull(Exception):
    """The engine's queue of waiting requests is full: try again later."""


class Engine:
    """Schedules requests per step over `max_batch` KV slots of `context` positions each."""

    def __init__(self, decoder: Decoder, decode_text: Callable[[list[int]], str], stop_ids: frozenset[int],
                 max_batch: int = 8, max_queue: int = 64, context: int | None = None,
                 prefill_chunk: int = 512, prefill_budget: int = 2048) -> None:
        layout = decoder.layout
        if layout.shared_buffer and not layout.independent_rows:
            raise BadInput("this folder's attention was fitted to an older ONNX Runtime (fuse runtime = ...), whose "
                           "rows cannot sit at different positions: serve a folder fused without `runtime`")
        if not layout.shared_buffer:
            raise BadInput("this folder's attention is not fused for batching: serve the output of "
                           "`onnxforge compress DIR OUT --recipe fuse` (or int4) instead")
        if decoder.device != "cpu":
            raise BadInput(f"serving runs on the CPU provider for now (the KV slots are host memory), not "
                           f"{decoder.provider}: pass --provider cpu")
        if max_batch < 1 or max_queue < 0 or min(prefill_chunk, prefill_budget) < 1:
            raise BadInput(f"max batch and the prefill tokens must be >= 1 and max queue >= 0, got {max_batch}, "
                           f"{prefill_chunk}/{prefill_budget} and {max_queue}")
        self.decoder, self.decode_text, self.stop_ids = decoder, decode_text, stop_ids
        self.max_batch, self.max_queue = max_batch, max_queue
        self.prefill_chunk, self.prefill_budget = prefill_chunk, prefill_budget
        self.context = _engine_context(decoder, context)
        self.slots = SlotMemory(layout, max_batch, self.context)
        self.running: list[Request] = []  # running[i] owns slot row i
        self._waiting: deque[Request] = deque()
        self._wake = threading.Condition()

    @property
    def waiting(self) -> int:
        """Requests in the queue, not yet prefilled."""
        return len(self._waiting)

    def submit(self, prompt_ids: list[int], settings: RequestSettings, on_event: Callable[[TokenEvent], None],
               request_id: str = "") -> Request:
        """Queue a request; its events go to `on_event`. Raises BadInput (too long) or QueueFull."""
        if not prompt_ids:
            raise BadInput("the prompt is empty: give some text to answer")
        if len(prompt_ids) + settings.max_tokens > self.context:
            raise BadInput(f"the prompt ({len(prompt_ids)} tokens) plus max_tokens ({settings.max_tokens}) exceeds "
                           f"the served context of {self.context} tokens: shorten the prompt or lower max_tokens")
        request = Request(list(prompt_ids), settings, on_event, TextStream(self.decode_text, settings.stop),
                          request_id)
        with self._wake:
            free_slots = self.max_batch - len(self.running)
            if len(self._waiting) >= self.max_queue + free_slots:
                raise QueueFull(f"{self.max_batch} requests are running and {len(self._waiting)} waiting")
            self._waiting.append(request)
            self._wake.notify()
        return request

    def cancel(self, request: Request) -> None:
        """Stop `request` (its slot is freed at the next step); safe from any thread."""
        request.cancelled = True
        with self._wake:
            self._wake.notify()

    def step(self) -> bool:
        """One scheduling step: drop cancelled requests, admit (prefill) new ones, decode the batch.
        Returns whether there was anything to do."""
        self._drop_cancelled()
        admitted, decoding = self._admit(), bool(self.running)
        if decoding:
            self._decode()
        return admitted or decoding

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set, sleeping while there is nothing to do (the server's engine thread)."""
        while not stop.is_set():
            with self._wake:
                if not self._waiting and not self.running:
                    self._wake.wait(timeout=0.2)
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a failed call ends its requests, never the engine
                log.exception("engine step failed; its requests end with finish_reason=error")
                self._fail_all()

    def _drop_cancelled(self) -> None:
        with self._wake:
            kept = [r for r in self._waiting if not r.cancelled]
            dropped = [r for r in self._waiting if r.cancelled]
            self._waiting = deque(kept)
        for request in dropped:
            _end(request, CANCELLED)
        for row in reversed(range(len(self.running))):
            if self.running[row].cancelled:
                _end(self.running[row], CANCELLED)
                self._free(row)

    def _admit(self) -> bool:
        """Prefill waiting requests into free slots, chunk by chunk, up to this step's budget."""
        spent = 0
        while spent < self.prefill_budget and (batch := self._admissible()):
            first = len(self.running)
            prompts = [request.prompt_ids for request in batch]
            logits = self._prefill(first, prompts)
            self.running.extend(batch)
            for offset in range(len(batch)):
                self._emit(first + offset, logits[offset])
            for row in reversed(range(first, first + len(batch))):
                if self.running[row].finish_reason is not None:
                    self._free(row)
            spent += len(batch) * max(map(len, prompts))
        return spent > 0

    def _admissible(self) -> list[Request]:
        """Waiting requests for the free slots whose padded prompts fit one chunk (at least one)."""
        batch: list[Request] = []
        with self._wake:
            while self._waiting and len(self.running) + len(batch) < self.max_batch:
                longest = max([len(r.prompt_ids) for r in batch] + [len(self._waiting[0].prompt_ids)])
                if batch and longest * (len(batch) + 1) > self.prefill_chunk:
                    break
                batch.append(self._waiting.popleft())
        return batch

    def _prefill(self, first: int, prompts: list[list[int]]) -> np.ndarray:
        """Keys and values of each prompt written to slots first.. from position 0 (right-padded, one call);
        the logits of each prompt's last token [prompts, vocab]."""
        ids, mask = pad_rows(prompts, right=True)
        positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape)
        last = np.array([len(prompt) - 1 for prompt in prompts])
        return self.decoder.step(self.slots.cache(first, first + len(prompts)), ids, mask, positions, last)

    def _decode(self) -> None:
        rows = len(self.running)
        lengths = np.array([r.cache_length for r in self.running], dtype=np.int64)
        ids = np.array([[r.generated[-1]] for r in self.running], dtype=np.int64)
        mask = (np.arange(lengths.max() + 1)[None, :] <= lengths[:, None]).astype(np.int64)
        logits = self.decoder.step(self.slots.cache(0, rows), ids, mask, lengths[:, None])
        for row in range(rows):
            self._emit(row, logits[row])
        for row in reversed(range(rows)):
            if self.running[row].finish_reason is not None:
                self._free(row)

    def _emit(self, row: int, logits: np.ndarray) -> None:
        request = self.running[row]
        event = request.choose(logits, self.stop_ids)
        request.on_event(event)

    def _free(self, row: int) -> None:
        """Give slot `row` back: the last running request moves into it, so rows stay contiguous."""
        last = len(self.running) - 1
        if row != last:
            self.slots.move(last, row, self.running[last].cache_length)
            self.running[row] = self.running[last]
        self.running.pop()

    def _fail_all(self) -> None:
        for request in self.running:
            _end(request, ERROR)
        self.running.clear()


def _end(request: Request, reason: str) -> None:
    request.finish_reason = reason
    request.on_event(TokenEvent(None, "", reason))


def _engine_context(decoder: Decoder, asked: int | None) -> int:
    """Positions per slot: what was asked, within the model's context (and below a LongRoPE switch)."""
    limits = [n for n in (decoder.context_length, decoder.rope_switch) if n]
    context = min([asked or 2048, *limits])
    if decoder.rope_switch and (asked or 0) > decoder.rope_switch:
        log.warning("context limited to %d, where this LongRoPE model switches frequencies", decoder.rope_switch)
    if context < 2:
        raise BadInput(f"the served context must be at least 2 tokens, got {context}")
    return context
