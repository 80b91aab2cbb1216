"""The same FastAPI app as a Ray Serve deployment: one engine per replica, Ray Serve's routing and back-pressure.

`onnxforge serve DIR --ray --replicas N` starts (or joins, with `--ray-address`) a Ray cluster and
runs the deployment. Each replica builds the app itself and loads the model before it takes
requests (so Ray Serve routes only to loaded replicas); it says who answered in the
`x-onnxforge-replica` response header (replica id:pid). Ray Serve routes requests
to replicas with free room (`max_ongoing_requests`: the engine's slots plus its queue), answers
503 once `max_queued_requests` wait in front of them, restarts a replica that dies, and
autoscales between `min`..`max` replicas when asked to.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from dataclasses import dataclass

from onnxforge.errors import terminate
from onnxforge.serve.app import ServerConfig, create_app

log = logging.getLogger("onnxforge.serve")


@dataclass(frozen=True)
class RaySettings:
    """How many replicas, where the cluster is, how much may wait, and the autoscaling range."""

    replicas: int = 1
    address: str | None = None  # None: a local Ray instance; "auto" or host:port joins a running cluster
    max_queued_requests: int = 64
    autoscale: tuple[int, int] | None = None  # (min, max) replicas, instead of a fixed count
    cpus_per_replica: float = 1.0


def deployment(config: ServerConfig, settings: RaySettings):
    """The Ray Serve application (bound deployment) serving `config.folder`."""
    from ray import serve

    def build_app():  # runs in each replica: its own engine, its own name in the response header
        context = serve.get_replica_context()
        replica = f"{context.replica_id.unique_id}:{os.getpid()}"
        return create_app(dataclasses.replace(config, replica=replica, load_in_background=False))

    options = {"max_ongoing_requests": config.max_batch + config.max_queue,
               "max_queued_requests": settings.max_queued_requests,
               "ray_actor_options": {"num_cpus": settings.cpus_per_replica},
               "health_check_period_s": 2, "health_check_timeout_s": 10}
    if settings.autoscale:
        low, high = settings.autoscale
        options["autoscaling_config"] = {"min_replicas": low, "max_replicas": high,
                                         "target_ongoing_requests": config.max_batch}
    else:
        options["num_replicas"] = settings.replicas
    return serve.deployment(serve.ingress(build_app)(), name="onnxforge", **options).bind()


def run(config: ServerConfig, settings: RaySettings, host: str, port: int) -> None:
    """Start or join Ray, deploy, and block until Ctrl-C or SIGTERM; then remove the deployment (and the
    local Ray instance, if this started one)."""
    import ray
    from ray import serve

    ray.init(address=settings.address, include_dashboard=False, logging_level=logging.WARNING)
    signal.signal(signal.SIGTERM, terminate)  # ray.init installs its own handler, which does not unwind
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(deployment(config, settings), name="onnxforge", route_prefix="/")
        while True:
            time.sleep(1)
    finally:
        serve.delete("onnxforge")
        ray.shutdown()
