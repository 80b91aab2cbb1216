"""`onnxforge chat`: history kept between turns, /reset, and Ctrl-C stopping an answer, not the chat."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onnxforge.cli.chat import chat_loop
from onnxforge.runtime.generate import GenerationSettings, Generator

SETTINGS = GenerationSettings(max_new_tokens=12)


@pytest.fixture(scope="module")
def generator(export_tiny: Callable[[str], Path]) -> Generator:
    return Generator(export_tiny("llama"))


def _reader(lines: list[object]) -> Callable[[str], str]:
    pending: Iterator[object] = iter(lines)

    def read(prompt: str) -> str:
        line = next(pending)
        if isinstance(line, BaseException):
            raise line
        return str(line)

    return read


def test_the_second_turn_sees_the_first(generator: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[list[dict[str, str]]] = []
    original = generator.prompt_ids
    monkeypatch.setattr(generator, "prompt_ids", lambda p, raw=False: prompts.append(p) or original(p, raw))
    history = chat_loop(generator, SETTINGS, _reader(["Hello", "And then?", "/exit"]), lambda text: None)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert prompts[-1][:3] == history[:3]


def test_reset_forgets_and_end_of_input_leaves(generator: Generator) -> None:
    history = chat_loop(generator, SETTINGS, _reader(["Hello", "/reset", "Hi", EOFError()]), lambda text: None)
    assert [m["content"] for m in history if m["role"] == "user"] == ["Hi"]


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(generator: Generator) -> None:
    written: list[str] = []

    def write(text: str) -> None:
        if text and len(written) == 2:
            written.append("<interrupted>")
            raise KeyboardInterrupt
        written.append(text)

    lines = ["Tell me a long story", KeyboardInterrupt(), "Thanks", "/exit"]
    history = chat_loop(generator, GenerationSettings(max_new_tokens=40), _reader(lines), write)
    assert "<interrupted>" in written
    assert [m["content"] for m in history if m["role"] == "user"] == ["Tell me a long story", "Thanks"]
    assert len(history) == 4
