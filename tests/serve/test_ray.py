"""Two Ray Serve replicas on this machine: requests spread over both; a killed replica is replaced."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.serve.server import Server

pytestmark = pytest.mark.slow
BODY = {"model": "tiny", "prompt": "once upon a time", "max_tokens": 8, "temperature": 0}


def _answered_by(url: str) -> str:
    """Which replica answered one completion ("" when it failed)."""
    try:
        response = httpx.post(f"{url}/v1/completions", json=BODY, timeout=30)
    except httpx.TransportError:
        return ""
    return response.headers.get("x-onnxforge-replica", "") if response.status_code == 200 else ""


def _round(url: str, count: int = 16) -> list[str]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: _answered_by(url), range(count)))


def _rounds_until(url: str, done: Callable[[set[str]], bool], seconds: float) -> set[str]:
    """Replicas seen over rounds of requests until `done(seen)` or the deadline (the proxy learns of
    new replicas asynchronously, so one round may still meet only the first)."""
    deadline, seen = time.monotonic() + seconds, set()
    while time.monotonic() < deadline and not done(seen):
        seen |= set(_round(url, 8))
    return seen


def test_two_replicas_share_the_load_and_a_killed_one_is_replaced(fused_tiny: Callable[[str], Path]) -> None:
    server = Server(fused_tiny("llama"), "--ray", "--replicas", "2", "--threads", "1", "--model-name", "tiny")
    try:
        replicas = _rounds_until(server.url, lambda seen: len(seen) >= 2, 60)
        assert len(replicas) == 2 and "" not in replicas
        victim = sorted(replicas)[0]
        os.kill(int(victim.split(":")[1]), signal.SIGKILL)
        survivor = (replicas - {victim}).pop()
        during = _round(server.url, 8)
        assert survivor in during and victim not in during
        seen = _rounds_until(server.url, lambda seen: bool(seen - replicas - {""}), 120)
        assert seen - replicas - {""}, "no new replica took the killed one's place"
    finally:
        server.stop()
