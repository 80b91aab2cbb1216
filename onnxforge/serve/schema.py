"""The OpenAI request bodies the server accepts (pydantic), turned into engine settings.

Defaults are OpenAI's (temperature 1, top_p 1, completions' max_tokens 16); `top_k`,
`repetition_penalty`, `ignore_eos` and `min_tokens` are vLLM's extensions. Fields OpenAI clients
send that change nothing here (user, metadata, ...) are accepted and ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from onnxforge.errors import BadInput
from onnxforge.runtime.sampling import SamplingSettings
from onnxforge.serve.requests import RequestSettings


class StreamOptions(BaseModel):
    """`stream_options`: whether a last chunk carries the usage."""

    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=-1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    repetition_penalty: float = Field(default=1.0, gt=0)
    ignore_eos: bool = False
    min_tokens: int = Field(default=0, ge=0)

    def settings(self, max_tokens: int, logprobs: int | None) -> RequestSettings:
        """Engine settings; `max_tokens` is the request's own or the server's default."""
        if self.n != 1:
            raise BadInput("n > 1 is not supported: send one request per completion")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        sampling = SamplingSettings(self.temperature, max(self.top_k, 0), self.top_p, self.repetition_penalty,
                                    self.seed)
        return RequestSettings(max_tokens, sampling, self.presence_penalty, self.frequency_penalty,
                               self.min_tokens, self.ignore_eos, stop, logprobs)

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Sampling):
    """POST /v1/completions."""

    prompt: str | list[int] | list[str]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False


class TextPart(BaseModel):
    """One part of a message's content list (text only)."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The content as one string."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def chat_messages(self) -> list[dict[str, str]]:
        """The messages as the chat template reads them."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]
