"""The real default model served: the greedy answer is `generate`'s, alone and among 15 other streams."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import openai
import pytest

from onnxforge.passes.calibration import CalibrationSettings
from onnxforge.passes.pipeline import compress
from onnxforge.passes.recipe import load_recipe
from onnxforge.runtime.generate import GenerationSettings, Generator
from tests.serve.server import Server

pytestmark = pytest.mark.slow
PROBE = "Tell me a long story about a dragon."
TOKENS, OTHERS = 32, 15


def test_the_served_answer_is_generates_alone_and_in_a_full_batch(
        default_export: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    folder = tmp_path / "fuse"
    compress(default_export[0], folder, load_recipe("fuse"), CalibrationSettings(samples=8, max_tokens=128))
    expected = Generator(folder).generate([PROBE], GenerationSettings(TOKENS)).completions[0].text
    server = Server(folder, "--model-name", "m", "--max-batch", str(OTHERS + 1), "--threads", "2")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=300)

    def probe() -> str:
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": PROBE}],
                                                max_tokens=TOKENS, temperature=0)
        return answer.choices[0].message.content

    def other(index: int) -> None:
        for _ in client.completions.create(model="m", prompt=f"Story {index}: once upon a time", max_tokens=96,
                                           temperature=0.8, seed=index, stream=True):
            pass

    try:
        assert probe() == expected
        others = [threading.Thread(target=other, args=(i,)) for i in range(OTHERS)]
        for thread in others:
            thread.start()
        assert probe() == expected
        for thread in others:
            thread.join(timeout=300)
    finally:
        server.stop()
