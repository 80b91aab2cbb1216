"""`onnxforge serve` of an encoder folder: POST /v1/embeddings through the openai client and raw HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from onnxforge.exporter.export import export_model
from onnxforge.runtime.embed import Embedder
from tests.serve.server import API_KEY, Server

TEXTS = ["the river flows", "a film about music"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("encoder") / "bert"
    export_model("tiny:bert", out)
    return out


@pytest.fixture(scope="module")
def server(encoder: Path) -> Iterator[Server]:
    running = Server(encoder, "--model-name", "mini", "--api-key", API_KEY, "--threads", "1")
    yield running
    running.stop()


def test_the_openai_client_gets_the_embeddings_embed_computes(server: Server, encoder: Path) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    response = client.embeddings.create(model="mini", input=TEXTS)  # the client asks for base64
    vectors = np.array([item.embedding for item in response.data])
    np.testing.assert_allclose(vectors, Embedder(encoder).embed(TEXTS).vectors, atol=1e-6)
    assert [item.index for item in response.data] == [0, 1] and response.usage.prompt_tokens > 4
    as_floats = client.embeddings.create(model="mini", input=TEXTS[0], encoding_format="float")
    np.testing.assert_allclose(as_floats.data[0].embedding, vectors[0], atol=1e-6)


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"model": "mini", "input": []}, 400, "input is empty"),
    ({"model": "mini", "input": ["fine", " "]}, 400, "empty text"),
    ({"model": "mini", "input": "x", "dimensions": 8}, 400, "dimensions 8 is not supported"),
    ({"model": "other", "input": "x"}, 404, "does not exist"),
    ({"model": "mini", "input": [[10**6]]}, 400, "token ids must be"),
])
def test_bad_embedding_requests_get_an_openai_error(server: Server, body: dict, status: int, message: str) -> None:
    response = httpx.post(f"{server.url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=30)
    assert response.status_code == status and message in response.json()["error"]["message"]


def test_an_encoder_server_refuses_completions(server: Server) -> None:
    response = httpx.post(f"{server.url}/v1/completions", json={"model": "mini", "prompt": "hi"},
                          headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert response.status_code == 400 and "answers POST /v1/embeddings only" in response.json()["error"]["message"]
