"""Streaming text: deltas never split a character, stop strings cut the text and are never shown."""

from __future__ import annotations

import pytest

from onnxforge.runtime.stream import INCOMPLETE, TextStream


def _bytes_decode(ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def _stream(text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:
    stream = TextStream(_bytes_decode, stop)
    deltas = []
    for byte in text.encode("utf-8"):
        deltas.append(stream.push(byte))
        if stream.stopped:
            break
    deltas.append(stream.finish())
    return deltas, stream


def test_multibyte_characters_are_never_split() -> None:
    text = "héllo wörld 👋 — 東京"
    deltas, stream = _stream(text)
    assert "".join(deltas) == text == stream.text
    assert all(INCOMPLETE not in delta for delta in deltas)
    assert "👋" in deltas and "東" in deltas


@pytest.mark.parametrize(("text", "stop", "expected"), [
    ("Hello END world", ("END",), "Hello "),
    ("a, b. c", (".", ","), "a"),
    ("no stop here", ("STOP",), "no stop here"),
    ("ends with ST", ("STOP",), "ends with ST"),
])
def test_stop_strings_cut_the_text(text: str, stop: tuple[str, ...], expected: str) -> None:
    deltas, stream = _stream(text, stop)
    assert "".join(deltas) == expected == stream.text
    assert stream.stopped == (expected != text)


def test_a_possible_stop_string_is_held_back_until_it_is_not_one() -> None:
    stream = TextStream(_bytes_decode, ("<end>",))
    shown = [stream.push(byte) for byte in b"ab<en"]
    assert "".join(shown) == "ab"
    assert stream.push(ord("d")) == "" and stream.push(ord("x")) == "<endx"
