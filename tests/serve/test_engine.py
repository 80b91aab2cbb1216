"""The serving engine without HTTP: continuous batching gives each request the tokens it gets alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from onnxforge.errors import BadInput
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.loop import greedy_continuations
from onnxforge.runtime.sampling import SamplingSettings
from onnxforge.runtime.text import TextCodec
from onnxforge.serve.engine import Engine, QueueFull
from onnxforge.serve.requests import CANCELLED, LENGTH, Request, RequestSettings, TokenEvent

PROMPTS = ["Hello there, how", "The quick brown fox jumps over the lazy dog and", "a", "0123456789 and more digits"]


def _engine(folder: Path, **options) -> Engine:
    return Engine(Decoder(folder), TextCodec(folder).decode, frozenset(), **options)


def _ids(folder: Path, text: str) -> list[int]:
    return TextCodec(folder).encode(text)


class Collector:
    """Events of one request."""

    def __init__(self) -> None:
        self.events: list[TokenEvent] = []

    def __call__(self, event: TokenEvent) -> None:
        self.events.append(event)

    @property
    def tokens(self) -> list[int]:
        return [e.token_id for e in self.events if e.token_id is not None]

    @property
    def finish_reason(self) -> str | None:
        return self.events[-1].finish_reason if self.events else None


def _submit(engine: Engine, ids: list[int], max_tokens: int, **settings) -> tuple[Request, Collector]:
    collector = Collector()
    return engine.submit(ids, RequestSettings(max_tokens, ignore_eos=True, **settings), collector), collector


def _run(engine: Engine, steps: int | None = None) -> None:
    count = 0
    while engine.step() and (steps is None or (count := count + 1) < steps):
        pass


@pytest.mark.parametrize("arch", ["llama", "mistral", "gemma2"])
def test_requests_joining_and_leaving_mid_batch_get_their_tokens_alone(
        arch: str, fused_tiny: Callable[[str], Path]) -> None:
    folder = fused_tiny(arch)
    lengths = [40, 6, 25, 12]  # mistral/gemma2 windows are 16: rows cross them at different steps
    prompts = [_ids(folder, p) for p in PROMPTS]
    alone = [greedy_continuations(Decoder(folder), [ids], n)[0] for ids, n in zip(prompts, lengths)]
    engine = _engine(folder, max_batch=3)
    first, _ = _submit(engine, prompts[0], lengths[0])
    collectors = [_submit(engine, prompts[0], lengths[0])[1]]
    engine.cancel(first)  # the first submission is cancelled before it ran: it never takes a slot
    _run(engine, steps=3)
    collectors += [_submit(engine, ids, n)[1] for ids, n in zip(prompts[1:3], lengths[1:3])]
    _run(engine, steps=4)
    assert len(engine.running) == 3 and engine.waiting == 0
    collectors.append(_submit(engine, prompts[3], lengths[3])[1])  # waits for a slot: the batch is full
    _run(engine)
    assert [c.tokens for c in collectors] == alone
    assert all(c.finish_reason == LENGTH for c in collectors) and not engine.running


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(fused_tiny: Callable[[str], Path]) -> None:
    folder = fused_tiny("llama")
    sampling = SamplingSettings(temperature=1.0, top_p=0.9, seed=3)
    prompts = [_ids(folder, p) for p in PROMPTS[:3]]

    def tokens(batch: list[list[int]]) -> list[list[int]]:
        engine = _engine(folder)
        collectors = [_submit(engine, ids, 15, sampling=sampling, presence_penalty=0.5)[1] for ids in batch]
        _run(engine)
        return [c.tokens for c in collectors]

    assert tokens(prompts) == [tokens([ids])[0] for ids in prompts]


def test_a_cancelled_request_frees_its_slot_and_the_others_go_on(fused_tiny: Callable[[str], Path]) -> None:
    folder = fused_tiny("llama")
    prompts = [_ids(folder, p) for p in PROMPTS[:2]]
    engine = _engine(folder, max_batch=2)
    (first, cancelled), (_, kept) = (_submit(engine, ids, 30) for ids in prompts)
    _run(engine, steps=5)
    engine.cancel(first)
    engine.step()
    assert len(engine.running) == 1 and cancelled.finish_reason == CANCELLED
    assert len(cancelled.tokens) == 6
    _run(engine)
    assert kept.tokens == greedy_continuations(Decoder(folder), [prompts[1]], 30)[0]


def test_the_queue_bound_holds(fused_tiny: Callable[[str], Path]) -> None:
    folder = fused_tiny("llama")
    engine = _engine(folder, max_batch=1, max_queue=2)
    ids = _ids(folder, PROMPTS[0])
    for _ in range(3):  # one for the free slot, two queued
        _submit(engine, ids, 4)
    with pytest.raises(QueueFull):
        _submit(engine, ids, 4)
    engine.step()  # one admitted: it runs, two still wait
    with pytest.raises(QueueFull):
        _submit(engine, ids, 4)
    _run(engine)
    assert not engine.running and engine.waiting == 0
    _submit(engine, ids, 4)


def test_limits_and_unfused_folders_are_refused(fused_tiny: Callable[[str], Path],
                                                export_tiny: Callable[[str], Path]) -> None:
    engine = _engine(fused_tiny("llama"), context=64)
    with pytest.raises(BadInput, match="exceeds the served context of 64"):
        _submit(engine, [5] * 60, 5)
    with pytest.raises(BadInput, match="prompt is empty"):
        _submit(engine, [], 5)
    with pytest.raises(BadInput, match="recipe fuse"):
        _engine(export_tiny("llama"))


def test_logprobs_are_the_models_and_stop_ids_end_a_request_after_min_tokens(
        fused_tiny: Callable[[str], Path]) -> None:
    folder = fused_tiny("llama")
    ids = _ids(folder, PROMPTS[1])
    expected = greedy_continuations(Decoder(folder), [ids], 1)[0]
    engine = Engine(Decoder(folder), TextCodec(folder).decode, frozenset(expected))
    stopped, held = Collector(), Collector()
    engine.submit(ids, RequestSettings(10, logprobs=2), stopped)
    engine.submit(ids, RequestSettings(10, min_tokens=4), held)
    _run(engine)
    assert stopped.tokens == expected and stopped.finish_reason == "stop"
    first = stopped.events[0]
    assert first.top_logprobs[0] == (expected[0], pytest.approx(first.logprob))
    assert first.logprob <= 0 and np.exp([p for _, p in first.top_logprobs]).sum() <= 1 + 1e-6
    assert expected[0] not in held.tokens[:4] and len(held.tokens) >= 5
    assert held.finish_reason == LENGTH or held.tokens[-1] == expected[0]


def test_a_burst_is_prefilled_in_chunks_up_to_the_step_budget(fused_tiny: Callable[[str], Path]) -> None:
    folder = fused_tiny("llama")
    ids = _ids(folder, PROMPTS[1])
    engine = _engine(folder, max_batch=8, prefill_chunk=2 * len(ids), prefill_budget=4 * len(ids))
    collectors = [_submit(engine, ids, 10)[1] for _ in range(6)]
    engine.step()  # two chunks of two prompts each (the budget), then one decode call over the four
    assert [len(c.tokens) for c in collectors] == [2, 2, 2, 2, 0, 0] and engine.waiting == 2
    engine.step()  # the last two join, the others decode on
    assert [len(c.tokens) for c in collectors] == [3, 3, 3, 3, 2, 2] and engine.waiting == 0
    _run(engine)
    alone = greedy_continuations(Decoder(folder), [ids], 10)[0]
    assert all(c.tokens == alone for c in collectors)
