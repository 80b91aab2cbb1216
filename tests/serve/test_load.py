"""64 concurrent streams against a real server, a third of the clients leaving early: nothing leaks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import openai

from tests.serve.server import API_KEY, Server

CLIENTS, TOKENS, LEAVERS_TOKENS = 64, 48, 200
LEAVERS = len(range(0, CLIENTS, 3))


def _rss_bytes(pid: int) -> int:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024


async def _client(client: openai.AsyncOpenAI, index: int) -> tuple[int, str | None]:
    """Stream one completion; every third client asks for more and leaves after three chunks. (chunks, reason)."""
    tokens = LEAVERS_TOKENS if index % 3 == 0 else TOKENS
    stream = await client.completions.create(model="tiny", prompt=f"request {index}: once upon", max_tokens=tokens,
                                             temperature=0, stream=True, extra_body={"ignore_eos": True})
    chunks, reason = 0, None
    async for chunk in stream:
        chunks += 1
        reason = chunk.choices[0].finish_reason or reason
        if index % 3 == 0 and chunks == 3:
            await stream.close()
            return chunks, "left"
    return chunks, reason


async def _load(url: str) -> list[tuple[int, str | None]]:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120) as client:
        return await asyncio.gather(*(_client(client, i) for i in range(CLIENTS)))


def test_many_streams_with_clients_leaving_leak_no_slot_and_no_memory(fused_tiny: Callable[[str], Path]) -> None:
    server = Server(fused_tiny("llama"), "--model-name", "tiny", "--api-key", API_KEY, "--max-batch", "16",
                    "--max-queue", "64", "--threads", "1")
    try:
        asyncio.run(_load(server.url))  # warm-up: the first requests allocate what the server keeps
        before = _rss_bytes(server.process.pid)
        results = asyncio.run(_load(server.url))
        stayed = [r for i, r in enumerate(results) if i % 3 != 0]
        assert all(reason == "length" for _, reason in stayed)  # every client that stayed got its whole answer
        assert all(reason == "left" for i, (_, reason) in enumerate(results) if i % 3 == 0)
        for _ in range(50):
            if server.metric("onnxforge_running_batch_size") == server.metric("onnxforge_queue_length") == 0:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert server.metric("onnxforge_running_batch_size") == server.metric("onnxforge_queue_length") == 0
        finished = 'onnxforge_requests_total{endpoint="completions",finish_reason="%s"}'
        cancelled, whole = server.metric(finished % "cancelled"), server.metric(finished % "length")
        assert cancelled + whole == 2 * CLIENTS, (cancelled, whole)  # every request ended and was counted
        assert cancelled >= LEAVERS  # most leavers stopped early (a few finish before the server sees them go)
        assert _rss_bytes(server.process.pid) < 1.1 * before
    finally:
        server.stop()
