"""Response bodies as OpenAI shapes them: completions, chat completions, their stream chunks, errors."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onnxforge.serve.requests import TokenEvent

FINISH_REASONS = {"stop": "stop", "length": "length", "cancelled": "abort", "error": "error"}


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """{"error": {...}} as OpenAI returns it."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class Answer:
    """What one request produced so far: text, tokens, log-probabilities, finish reason."""

    chat: bool
    model: str
    prompt_tokens: int
    token_text: Callable[[int], str]
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenEvent] = field(default_factory=list)
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        self.id = self.id or f"{'chatcmpl' if self.chat else 'cmpl'}-{uuid.uuid4().hex}"

    def add(self, event: TokenEvent) -> None:
        """Take one engine event."""
        self.text += event.text
        if event.token_id is not None:
            self.tokens.append(event.token_id)
            if event.logprob is not None:
                self.logprobs.append(event)
        if event.finish_reason is not None:
            self.finish_reason = FINISH_REASONS[event.finish_reason]

    @property
    def usage(self) -> dict[str, int]:
        """Token counts (the stop token, when one ended the answer, counts as generated)."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": len(self.tokens),
                "total_tokens": self.prompt_tokens + len(self.tokens)}

    def body(self) -> dict[str, Any]:
        """The whole (non-streamed) response."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": self.text},
                      "logprobs": self._chat_logprobs(self.logprobs), "finish_reason": self.finish_reason}
        else:
            choice = {"index": 0, "text": self.text, "logprobs": self._completion_logprobs(self.logprobs),
                      "finish_reason": self.finish_reason}
        return {**self._head(), "choices": [choice], "usage": self.usage}

    def chunk(self, event: TokenEvent, first: bool) -> dict[str, Any]:
        """One streamed chunk for `event` (the first chat chunk also carries the role)."""
        logprobs = [event] if event.logprob is not None else []
        reason = FINISH_REASONS[event.finish_reason] if event.finish_reason else None
        if self.chat:
            delta = {"role": "assistant", "content": event.text} if first else {"content": event.text}
            choice = {"index": 0, "delta": delta, "logprobs": self._chat_logprobs(logprobs), "finish_reason": reason}
        else:
            choice = {"index": 0, "text": event.text, "logprobs": self._completion_logprobs(logprobs),
                      "finish_reason": reason}
        return {**self._head(chunk=True), "choices": [choice]}

    def usage_chunk(self) -> dict[str, Any]:
        """The last chunk when stream_options.include_usage is set: no choices, the usage."""
        return {**self._head(chunk=True), "choices": [], "usage": self.usage}

    def _head(self, chunk: bool = False) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _completion_logprobs(self, events: list[TokenEvent]) -> dict[str, Any] | None:
        if not events:
            return None
        return {"tokens": [self.token_text(e.token_id) for e in events],
                "token_logprobs": [e.logprob for e in events],
                "top_logprobs": [{self.token_text(i): p for i, p in e.top_logprobs} for e in events],
                "text_offset": []}

    def _chat_logprobs(self, events: list[TokenEvent]) -> dict[str, Any] | None:
        if not events:
            return None
        return {"content": [{"token": self.token_text(e.token_id), "logprob": e.logprob, "bytes": None,
                             "top_logprobs": [{"token": self.token_text(i), "logprob": p, "bytes": None}
                                              for i, p in e.top_logprobs]} for e in events]}


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
