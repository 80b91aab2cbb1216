"""`POST /v1/embeddings` for a server of an encoder folder: OpenAI's request and response bodies.

`input` is a text, a list of texts, or token ids (a list, or a list of lists), as OpenAI accepts;
`encoding_format` "float" (lists of numbers) or "base64" (little-endian float32 bytes, what the
openai Python client asks for by default). `dimensions` may only repeat the model's own size: its
vectors are not truncatable without retraining (Matryoshka models aside).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from onnxforge.errors import BadInput
from onnxforge.runtime.embed import Embedder

MAX_INPUTS = 256


class EmbeddingRequest(BaseModel):
    """The body of POST /v1/embeddings."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


def embedding_response(embedder: Embedder, body: EmbeddingRequest, name: str) -> dict[str, Any]:
    """Embed the request's inputs; the OpenAI list of embedding objects with usage."""
    if body.dimensions is not None and body.dimensions != embedder.dimensions:
        raise BadInput(f"dimensions {body.dimensions} is not supported: this model's embeddings have "
                       f"{embedder.dimensions}")
    texts = _texts(embedder, body.input)
    result = embedder.embed(texts)
    data = [{"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
            for i, vector in enumerate(result.vectors)]
    tokens = sum(result.tokens)
    return {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _texts(embedder: Embedder, value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    """The inputs as texts (token ids are decoded: the tokenizer adds the special tokens again)."""
    if isinstance(value, str):
        value = [value]
    if not value:
        raise BadInput("input is empty: give a text or a list of texts")
    if isinstance(value[0], int):
        value = [value]
    if len(value) > MAX_INPUTS:
        raise BadInput(f"input has {len(value)} items, more than {MAX_INPUTS}: split the request")
    if isinstance(value[0], list):
        vocab = embedder.tokenizer.get_vocab_size()
        if any(not ids or not all(0 <= t < vocab for t in ids) for ids in value):
            raise BadInput(f"token ids must be non-empty lists of ids in [0, {vocab})")
        value = [embedder.tokenizer.decode(ids) for ids in value]
    if any(not text.strip() for text in value):
        raise BadInput("input holds an empty text: every text must have some content")
    return list(value)


def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(float).tolist()
