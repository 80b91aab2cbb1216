"""`onnxforge serve DIR`: an OpenAI-compatible HTTP server with continuous batching (extra `onnxforge[serve]`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxforge.errors import EXIT_OK, BadInput, missing_extra
from onnxforge.folder import check_folder
from onnxforge.progress import console
from onnxforge.runtime.providers import ORT_NAMES, ProviderSettings
from onnxforge.runtime.session import SessionSettings


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The serve sub-command."""
    serve = commands.add_parser("serve", help="serve a fused folder over the OpenAI HTTP API (continuous batching)")
    serve.add_argument("dir", metavar="DIR", type=Path, help="a folder written by onnxforge compress (fuse or int4)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="default %(default)s")
    serve.add_argument("--max-batch", type=int, default=8, help="requests decoded together (KV slots; default 8)")
    serve.add_argument("--max-queue", type=int, default=64, help="requests waiting for a slot before 429 (default 64)")
    serve.add_argument("--max-prefill-tokens", type=int, default=2048,
                       help="prompt tokens prefilled per step before the running requests decode again (default 2048)")
    serve.add_argument("--context", type=int, help="tokens per slot, prompt included (default 2048 or the model's)")
    serve.add_argument("--max-tokens-per-request", type=int, help="largest max_tokens a request may ask for")
    serve.add_argument("--api-key", help="require Authorization: Bearer KEY on every endpoint but /health")
    serve.add_argument("--model-name", default="", help="the model id clients use (default: the folder's name)")
    serve.add_argument("--threads", type=int, default=0, help="CPU threads (0 = onnxruntime's choice)")
    serve.add_argument("--provider", default="cpu", metavar="NAME[,NAME]",
                       help=f"{', '.join(ORT_NAMES)} or a list; falls back towards cpu (default %(default)s)")
    ray = serve.add_argument_group("Ray Serve (extra onnxforge[ray])")
    ray.add_argument("--ray", action="store_true", help="deploy on Ray Serve: one engine per replica")
    ray.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    ray.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas instead")
    ray.add_argument("--ray-address", help="join this Ray cluster (auto, or HOST:PORT of `ray start --head`)")
    ray.add_argument("--max-queued-requests", type=int, default=64,
                     help="requests Ray Serve holds before answering 503 (default 64)")
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the folder, then serve until Ctrl-C or SIGTERM."""
    try:
        import uvicorn

        from onnxforge.serve.app import ServerConfig, create_app
    except ImportError as error:
        raise missing_extra(error, "serving", "serve") from None
    check_folder(args.dir)
    for flag in ("max_batch", "port", "threads", "max_queue", "max_prefill_tokens"):
        if getattr(args, flag) < 0 or (flag in ("max_batch", "max_prefill_tokens") and getattr(args, flag) < 1):
            raise BadInput(f"--{flag.replace('_', '-')} is {getattr(args, flag)}: give a positive number")
    session = SessionSettings(ProviderSettings.parse(args.provider, threads=args.threads))
    config = ServerConfig(args.dir, args.model_name, session, args.max_batch, args.max_queue,
                          args.max_tokens_per_request, args.context, args.api_key,
                          max_prefill_tokens=args.max_prefill_tokens)
    console.print(f"serving {config.name} on http://{args.host}:{args.port}/v1 (/health, /metrics)")
    if args.ray:
        _run_on_ray(args, config)
    else:
        uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def _run_on_ray(args: argparse.Namespace, config) -> None:  # noqa: ANN001 - ServerConfig, imported lazily
    try:
        from onnxforge.serve.ray_app import RaySettings, run
    except ImportError as error:
        raise missing_extra(error, "--ray", "ray") from None
    settings = RaySettings(args.replicas, args.ray_address, args.max_queued_requests, _autoscale(args.autoscale),
                           float(args.threads or 1))
    run(config, settings, args.host, args.port)


def _autoscale(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    low, _, high = text.partition(":")
    if not (low.isdigit() and high.isdigit() and 0 < int(low) <= int(high)):
        raise BadInput(f"--autoscale is '{text}': give MIN:MAX replicas, for example 1:4")
    return int(low), int(high)
