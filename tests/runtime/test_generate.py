"""Generation on tiny exports: IO binding, batching, stopping, context guard, seeds, shared KV buffer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from onnxforge.errors import BadInput
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.generate import GenerationSettings, Generator
from onnxforge.runtime.loop import greedy_continuations
from onnxforge.runtime.sampling import SamplingSettings
from onnxforge.runtime.session import SessionSettings

from .gqa_graph import write_gqa_folder

PROMPTS = ["Hello there", "The quick brown fox jumps over the lazy dog", "a"]
GREEDY_20 = GenerationSettings(max_new_tokens=20)


@pytest.fixture(scope="module")
def tiny(export_tiny: Callable[[str], Path]) -> Generator:
    return Generator(export_tiny("llama"))


def _ids(generator: Generator, prompts: list[str], settings: GenerationSettings = GREEDY_20) -> list[list[int]]:
    return [c.token_ids for c in generator.generate(prompts, settings, raw=True).completions]


def test_io_bound_steps_give_the_logits_of_plain_calls(tiny: Generator) -> None:
    decoder = tiny.decoder
    ids = np.arange(40, 52, dtype=np.int64)[None]
    cache = decoder.new_cache(1, 16)
    bound = decoder.step(cache, ids[:, :9], np.ones((1, 9), np.int64), np.arange(9)[None])
    plain, past = decoder.forward(ids[:, :9], np.ones((1, 9), np.int64), np.arange(9)[None], decoder.empty_past(1))
    np.testing.assert_allclose(bound, plain[:, -1], atol=1e-6)
    for position in range(9, 12):
        mask, where = np.ones((1, position + 1), np.int64), np.array([[position]])
        bound = decoder.step(cache, ids[:, position:position + 1], mask, where)
        plain, past = decoder.forward(ids[:, position:position + 1], mask, where, past)
        np.testing.assert_allclose(bound, plain[:, -1], atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_batched_greedy_equals_each_prompt_alone(arch: str, export_tiny: Callable[[str], Path]) -> None:
    generator = Generator(export_tiny(arch))
    assert _ids(generator, PROMPTS) == [_ids(generator, [prompt])[0] for prompt in PROMPTS]


def test_a_stop_string_stops_only_its_row(tiny: Generator) -> None:
    free = tiny.generate(PROMPTS[:2], GREEDY_20, raw=True).completions
    stop = free[0].text[5:8]
    stopped = tiny.generate(PROMPTS[:2], GenerationSettings(20, stop_strings=(stop,)), raw=True).completions
    assert stopped[0].text == free[0].text[:free[0].text.index(stop)] and stopped[0].finish_reason == "stop_string"
    assert len(stopped[0].token_ids) < 20
    assert stopped[1].token_ids == free[1].token_ids


def test_a_prompt_longer_than_the_context_is_refused_or_truncated_when_asked(tiny: Generator) -> None:
    long_prompt = "x" * 300
    with pytest.raises(BadInput, match="300 tokens but the model's context is 256.*--truncate"):
        tiny.generate([long_prompt], GREEDY_20, raw=True)
    [kept] = tiny.generate([long_prompt], GenerationSettings(20, truncate_prompt=True), raw=True).completions
    assert kept.prompt_tokens == 256 - 20 and len(kept.token_ids) <= 20


def test_generation_stops_at_the_end_of_the_context(tiny: Generator) -> None:
    [result] = tiny.generate(["y" * 250], GenerationSettings(50), raw=True).completions
    assert result.prompt_tokens + len(result.token_ids) <= 256 and result.finish_reason in ("length", "stop")


def test_an_empty_prompt_is_refused(tiny: Generator) -> None:
    with pytest.raises(BadInput, match="the prompt is empty"):
        tiny.prompt_ids("   ")


def test_seeded_sampling_is_reproducible(tiny: Generator) -> None:
    def sample(seed: int) -> list[list[int]]:
        return _ids(tiny, PROMPTS, GenerationSettings(20, SamplingSettings(temperature=1.0, seed=seed)))

    assert sample(3) == sample(3) != sample(4)


def test_the_optimised_graph_cache_is_reused_and_gives_the_same_logits(
    export_tiny: Callable[[str], Path], tmp_path: Path
) -> None:
    folder, ids = export_tiny("llama"), np.arange(40, 50, dtype=np.int64)[None]
    first = Decoder(folder, SessionSettings(optimized_cache=tmp_path))
    [entry] = list(tmp_path.iterdir())
    second = Decoder(folder, SessionSettings(optimized_cache=tmp_path))
    assert list(tmp_path.iterdir()) == [entry] and (entry / "model.onnx").is_file()
    feeds = (ids, np.ones_like(ids), np.arange(10)[None])
    np.testing.assert_allclose(second.forward(*feeds, second.empty_past(1))[0],
                               first.forward(*feeds, first.empty_past(1))[0], atol=1e-6)


def test_a_shared_kv_buffer_gives_the_tokens_of_a_growing_cache(tmp_path: Path) -> None:
    growing = Decoder(write_gqa_folder(tmp_path / "growing", shared_buffer=False))
    shared = Decoder(write_gqa_folder(tmp_path / "shared", shared_buffer=True))
    assert shared.layout.shared_buffer and not growing.layout.shared_buffer
    rows = [[5, 6, 7, 8, 9, 10], [11, 3, 4, 60, 2, 1]]
    assert greedy_continuations(shared, rows, 24) == greedy_continuations(growing, rows, 24)
    assert shared.new_cache(2, 30).values[0].shape() == [2, 2, 30, 8]
