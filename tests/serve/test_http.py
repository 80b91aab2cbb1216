"""`onnxforge serve` as a real process on 127.0.0.1, driven by the openai client and raw HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from onnxforge.runtime.generate import GenerationSettings, Generator
from tests.serve.server import API_KEY, Server

MODEL = "tiny"
PROMPT = "Tell me about the sea"
GREEDY = {"temperature": 0, "extra_body": {"ignore_eos": True}}


@pytest.fixture(scope="module")
def server(fused_tiny: Callable[[str], Path]) -> Iterator[Server]:
    running = Server(fused_tiny("llama"), "--model-name", MODEL, "--api-key", API_KEY, "--max-batch", "2",
                     "--max-queue", "0", "--threads", "1")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def generator(fused_tiny: Callable[[str], Path]) -> Generator:
    return Generator(fused_tiny("llama"))


def _expected(generator: Generator, prompt: str, tokens: int, raw: bool) -> tuple[str, int, int]:
    run = generator.generate([prompt], GenerationSettings(tokens), raw=raw)
    completion = run.completions[0]
    return completion.text, completion.prompt_tokens, len(completion.token_ids)


def test_chat_and_completion_answer_what_generate_answers(client: openai.OpenAI, generator: Generator) -> None:
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=12, **GREEDY)
    text, prompt_tokens, new = _expected(generator, PROMPT, 12, raw=False)
    assert chat.choices[0].message.content == text and chat.choices[0].finish_reason == "length"
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (prompt_tokens, new) == (prompt_tokens, 12)
    assert chat.object == "chat.completion" and chat.id.startswith("chatcmpl-") and chat.created > 0
    completion = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=9, **GREEDY)
    text, prompt_tokens, _ = _expected(generator, PROMPT, 9, raw=True)
    assert completion.choices[0].text == text and completion.usage.completion_tokens == 9
    assert completion.usage.total_tokens == prompt_tokens + 9


def test_streaming_gives_the_same_text_and_the_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                           max_tokens=20, **GREEDY).choices[0].message.content
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                                 max_tokens=20, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    streamed = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=7, stream=True, logprobs=2, **GREEDY)
    pieces = list(streamed)
    assert len([p for p in pieces if p.choices[0].logprobs]) == 7
    assert all(p.choices[0].logprobs.token_logprobs[0] <= 0 for p in pieces if p.choices[0].logprobs)


def test_models_and_health(server: Server, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert httpx.get(f"{server.url}/health").status_code == 200  # no API key needed


BAD_REQUESTS = [  # (body or raw bytes, headers, status, words in the message)
    (b'{"model": "tiny", "prompt": ', {}, 400, "JSON"),
    ({"model": "tiny", "prompt": "hi", "max_tokens": "many"}, {}, 400, "max_tokens"),
    ({"model": "other", "prompt": "hi"}, {}, 404, "does not exist"),
    ({"model": "tiny", "messages": []}, {}, 400, "messages"),
    (b'{"model": "tiny", "prompt": "\xff\xfe"}', {}, 400, ""),
    ({"model": "tiny", "prompt": "hi", "max_tokens": 100000}, {}, 400, "max_tokens"),
    ({"model": "tiny", "prompt": "hi", "n": 2}, {}, 400, "n > 1"),
    ({"model": "tiny", "prompt": "hi", "temperature": -1}, {}, 400, "temperature"),
    ({"model": "tiny", "prompt": ""}, {}, 400, "empty"),
    ({"model": "tiny", "prompt": "hi"}, {"Authorization": "Bearer wrong"}, 401, "API key"),
    ({"model": "tiny", "prompt": "x" * (2 << 20)}, {}, 413, "body"),
]


@pytest.mark.parametrize(("body", "headers", "status", "words"), BAD_REQUESTS,
                         ids=["malformed-json", "wrong-type", "unknown-model", "no-messages", "invalid-utf8",
                              "too-many-tokens", "n-2", "bad-temperature", "empty-prompt", "wrong-key", "too-big"])
def test_bad_input_gets_its_status_and_an_openai_error(server: Server, body, headers: dict, status: int,
                                                       words: str) -> None:
    path = "/v1/chat/completions" if isinstance(body, dict) and "messages" in body else "/v1/completions"
    sent = {"content": body} if isinstance(body, bytes) else {"json": body}
    response = httpx.post(f"{server.url}{path}", headers={"Authorization": f"Bearer {API_KEY}",
                                                          "Content-Type": "application/json", **headers},
                          timeout=30, **sent)
    assert response.status_code == status
    error = response.json()["error"]
    assert words.lower() in error["message"].lower() and error["type"]
    assert httpx.get(f"{server.url}/health").status_code == 200  # and the server is still up


def test_a_client_leaving_mid_stream_frees_its_slot(server: Server, client: openai.OpenAI) -> None:
    cancelled = 'onnxforge_requests_total{endpoint="completions",finish_reason="cancelled"}'
    before = server.metric(cancelled)
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=200, stream=True, **GREEDY)
    next(iter(stream))
    stream.close()
    for _ in range(100):
        if server.metric("onnxforge_running_batch_size") == 0:
            break
        threading.Event().wait(0.1)
    assert server.metric("onnxforge_running_batch_size") == 0 and server.metric(cancelled) == before + 1
    assert client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, **GREEDY).usage.completion_tokens == 3


def test_a_full_server_answers_429(server: Server, client: openai.OpenAI) -> None:
    streams = [client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=200, stream=True, **GREEDY)
               for _ in range(2)]  # both slots taken, and the queue holds none
    for stream in streams:
        next(iter(stream))
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, **GREEDY)
    for stream in streams:
        stream.close()


def test_an_unfused_folder_is_never_served(export_tiny: Callable[[str], Path]) -> None:
    plain = Server(export_tiny("llama"), ready_status=503)
    try:
        health = httpx.get(f"{plain.url}/health")
        assert health.status_code == 503 and "recipe fuse" in health.json()["status"]
        response = httpx.post(f"{plain.url}/v1/completions", json={"model": "llama", "prompt": "hi"})
        assert response.status_code == 503 and "loading" in response.json()["error"]["message"]
    finally:
        plain.stop()


def test_a_generation_server_refuses_embeddings(server: Server) -> None:
    response = httpx.post(f"{server.url}/v1/embeddings", json={"model": MODEL, "input": "hi"},
                          headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert response.status_code == 400 and "needs an encoder folder" in response.json()["error"]["message"]
