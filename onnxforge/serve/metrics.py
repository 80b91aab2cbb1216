"""Prometheus metrics of one server: requests, tokens, queue and batch, latency histograms."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServerMetrics:
    """The server's own registry (several apps in one process do not collide)."""

    def __init__(self, queue_length: Callable[[], float], batch_size: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("onnxforge_requests", "Finished requests", ["endpoint", "finish_reason"], registry=r)
        self.prompt_tokens = Counter("onnxforge_prompt_tokens", "Prompt tokens prefilled", registry=r)
        self.generated_tokens = Counter("onnxforge_generation_tokens", "Tokens generated", registry=r)
        self.rejected = Counter("onnxforge_rejected_requests", "Requests refused", ["reason"], registry=r)
        Gauge("onnxforge_queue_length", "Requests waiting for a slot", registry=r).set_function(queue_length)
        Gauge("onnxforge_running_batch_size", "Requests in the decode batch", registry=r).set_function(batch_size)
        self.ttft = Histogram("onnxforge_time_to_first_token_seconds", "Arrival to first token", registry=r,
                              buckets=_LATENCY_BUCKETS)
        self.per_token = Histogram("onnxforge_time_per_output_token_seconds", "Mean time between tokens",
                                   registry=r, buckets=_LATENCY_BUCKETS)
        self.e2e = Histogram("onnxforge_request_latency_seconds", "Arrival to last token", registry=r,
                             buckets=_LATENCY_BUCKETS)

    def finished(self, endpoint: str, reason: str, prompt: int, generated: int, arrived: float,
                 first_token: float | None, ended: float) -> None:
        """Record one finished request."""
        self.requests.labels(endpoint, reason).inc()
        self.prompt_tokens.inc(prompt)
        self.generated_tokens.inc(generated)
        self.e2e.observe(ended - arrived)
        if first_token is not None:
            self.ttft.observe(first_token - arrived)
            if generated > 1:
                self.per_token.observe((ended - first_token) / (generated - 1))

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
