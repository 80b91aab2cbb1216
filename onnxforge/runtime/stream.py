"""Turning generated ids into text as they come: deltas that never split a character, stop strings.

Incremental decoding decodes a short window of ids twice (as text-generation-inference does) so
that byte-level tokens forming one UTF-8 character, or a space merged into the next token, are
only emitted once the text is final. Text that could be the start of a stop string is held back
until it is known not to be one.
"""

from __future__ import annotations

from collections.abc import Callable

INCOMPLETE = "\ufffd"


class TextStream:
    """Feed token ids one at a time; get the new text for each; stop at a stop string."""

    def __init__(self, decode: Callable[[list[int]], str], stop_strings: tuple[str, ...] = ()) -> None:
        self.decode, self.stop_strings = decode, tuple(s for s in stop_strings if s)
        self.ids: list[int] = []
        self.text = ""
        self.stopped = False
        self._prefix_offset = self._read_offset = 0
        self._emitted = 0

    def push(self, token: int) -> str:
        """Add one id; returns the text that became final (may be empty)."""
        self.ids.append(token)
        new_text = self._window_text()
        if new_text and not new_text.endswith(INCOMPLETE):
            self._accept(new_text)
        return self._release(final=False)

    def finish(self) -> str:
        """Whatever is left once generation ends (held-back text, an incomplete character)."""
        self._accept(self._window_text())
        return self._release(final=True)

    def _window_text(self) -> str:
        """Text added by the ids after the read offset, decoded with a little context before them."""
        before = self.decode(self.ids[self._prefix_offset:self._read_offset])
        after = self.decode(self.ids[self._prefix_offset:])
        return after[len(before):] if len(after) > len(before) else ""

    def _accept(self, new_text: str) -> None:
        if not self.stopped:
            self.text += new_text
        self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        cut = self._stop_index()
        if cut is not None:
            self.text, self.stopped = self.text[:cut], True
            end = cut
        else:
            end = len(self.text) if final else len(self.text) - self._held_back()
        delta, self._emitted = self.text[self._emitted:end], max(self._emitted, end)
        return delta

    def _stop_index(self) -> int | None:
        start = max(0, self._emitted - max((len(s) for s in self.stop_strings), default=0))
        found = [i for i in (self.text.find(s, start) for s in self.stop_strings) if i >= 0]
        return min(found) if found else None

    def _held_back(self) -> int:
        """Length of the longest end of the text that is the beginning of a stop string."""
        for size in range(min(len(self.text), max((len(s) for s in self.stop_strings), default=0)), 0, -1):
            if any(s.startswith(self.text[-size:]) for s in self.stop_strings):
                return size
        return 0
