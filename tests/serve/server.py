"""A real `onnxforge serve` process on 127.0.0.1 for the HTTP tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

API_KEY = "test-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """Start `onnxforge serve FOLDER ...` and wait until /health answers (200, or 503 after a failed load)."""

    def __init__(self, folder: Path, *options: str, ready_status: int = 200) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onnxforge.cli", "serve", str(folder), "--port", str(self.port), *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._wait(ready_status)

    def _wait(self, status: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.communicate()[1][-2000:]}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=2)
                if response.status_code == status and (status == 200 or "failed" in response.text):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("the server did not get ready")

    def metric(self, name: str) -> float:
        """One sample of the Prometheus exposition."""
        text = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5).text
        lines = (line.split()[-1] for line in text.splitlines() if line.startswith(name + " "))
        return float(next(lines, 0.0))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
