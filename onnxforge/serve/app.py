"""The OpenAI-compatible HTTP layer over the engine: FastAPI routes, API key, errors, streaming.

The model loads in a background thread when the app starts (`/health` answers 503 until it is
ready, then 200, never behind the API key); the engine then steps in its own thread, and each
request waits on an asyncio queue fed from it. A streaming client that goes away cancels its
request, whose slot the engine frees at its next step. Bad input of any kind is a 4xx with an
OpenAI error body; the server does not answer 500 to it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from onnxforge.errors import BadInput
from onnxforge.runtime.decoder import Decoder
from onnxforge.runtime.embed import Embedder, is_encoder_folder
from onnxforge.runtime.session import SessionSettings
from onnxforge.runtime.text import TextCodec
from onnxforge.serve.embeddings import EmbeddingRequest, embedding_response
from onnxforge.serve.engine import Engine, QueueFull
from onnxforge.serve.metrics import ServerMetrics
from onnxforge.serve.requests import RequestSettings, TokenEvent
from onnxforge.serve.responses import Answer, error_body, sse
from onnxforge.serve.schema import ChatRequest, CompletionRequest

log = logging.getLogger("onnxforge.serve")


@dataclass(frozen=True)
class ServerConfig:
    """What `onnxforge serve` was asked for."""

    folder: Path
    model_name: str = ""
    session: SessionSettings = field(default_factory=SessionSettings)
    max_batch: int = 8
    max_queue: int = 64
    max_tokens_per_request: int | None = None
    context: int | None = None
    api_key: str | None = None
    max_prefill_tokens: int = 2048  # padded prompt tokens per engine step
    max_body_bytes: int = 1 << 20
    replica: str = ""  # under Ray Serve: which replica answers (the x-onnxforge-replica header)
    load_in_background: bool = True  # False: the app starts only once the model is loaded (a Ray replica)

    @property
    def name(self) -> str:
        """The model id clients ask for: --model-name, else the folder's name."""
        return self.model_name or self.folder.resolve().name


class ServedModel:
    """The loaded folder: tokenizer, engine and the engine's thread, or an encoder's embedder (None until loaded)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.codec: TextCodec | None = None
        self.engine: Engine | None = None
        self.embedder: Embedder | None = None
        self.load_error: str | None = None
        self._stop = threading.Event()

    @property
    def ready(self) -> bool:
        """Whether requests can be answered."""
        return self.engine is not None or self.embedder is not None

    def load(self) -> None:
        """Open the folder and start the engine thread (runs in a background thread)."""
        try:
            config = self.config
            if is_encoder_folder(config.folder):
                self.embedder = Embedder(config.folder, config.session)
                log.info("serving the encoder %s: POST /v1/embeddings", config.name)
                return
            codec = TextCodec(config.folder)
            engine = Engine(Decoder(config.folder, config.session), codec.decode, frozenset(codec.stop_ids()),
                            config.max_batch, config.max_queue, config.context,
                            prefill_budget=config.max_prefill_tokens)
        except Exception as error:  # noqa: BLE001 - reported by /health and the log, the server stays up
            self.load_error = str(error)
            log.error("could not load %s: %s", self.config.folder, error)
            return
        self.codec = codec
        threading.Thread(target=engine.run, args=(self._stop,), name="onnxforge-engine", daemon=True).start()
        self.engine = engine
        log.info("serving %s: %d slots of %d tokens (%.0f MiB of KV memory)", config.name, engine.max_batch,
                 engine.context, engine.slots.bytes / 2**20)

    def stop(self) -> None:
        """Stop the engine thread."""
        self._stop.set()


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI application serving `config.folder`."""
    served = ServedModel(config)
    metrics = ServerMetrics(lambda: served.engine.waiting if served.engine else 0,
                            lambda: len(served.engine.running) if served.engine else 0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.load_in_background:
            threading.Thread(target=served.load, name="onnxforge-load", daemon=True).start()
        else:
            await asyncio.to_thread(served.load)
        yield
        served.stop()

    app = FastAPI(title="onnxforge", lifespan=lifespan)
    app.state.served = served
    _add_error_handlers(app, config)
    authorized = [Depends(_api_key_check(config.api_key))]

    @app.get("/health")
    async def health() -> JSONResponse:
        if not served.ready:
            status = "failed: " + served.load_error if served.load_error else "loading"
            return JSONResponse({"status": status}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models", dependencies=authorized)
    async def models() -> dict[str, Any]:
        length = served.embedder.max_length if served.embedder else _ready(served).context
        return {"object": "list", "data": [{"id": config.name, "object": "model", "created": 0,
                                            "owned_by": "onnxforge", "max_model_len": length}]}

    embedding_turn = asyncio.Semaphore(1)

    @app.post("/v1/embeddings", dependencies=authorized)
    async def embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        if served.embedder is None:
            _ready(served)
            raise BadInput(f"`{config.name}` is a text generation model: /v1/embeddings needs an encoder folder "
                           "(export all-minilm-l6-v2, or another encoder)")
        _check_model(body.model, config)
        async with embedding_turn:  # one model call at a time: concurrent ones would only share the same cores
            return await asyncio.to_thread(embedding_response, served.embedder, body, config.name)

    @app.get("/metrics", dependencies=authorized)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/completions", dependencies=authorized)
    async def completions(body: CompletionRequest) -> Response:
        engine, codec = _ready(served), served.codec
        _check_model(body.model, config)
        ids = _completion_prompt(body, codec)
        return await _answer(engine, codec, metrics, config, "completions", body, ids,
                             body.max_tokens, body.logprobs, chat=False)

    @app.post("/v1/chat/completions", dependencies=authorized)
    async def chat_completions(body: ChatRequest) -> Response:
        engine, codec = _ready(served), served.codec
        _check_model(body.model, config)
        messages = body.chat_messages()
        if not messages[-1]["content"].strip():
            raise BadInput("the last message is empty: give some text to answer")
        ids = codec.encode(codec.render_chat(messages))
        top = (body.top_logprobs or 0) if body.logprobs else None
        return await _answer(engine, codec, metrics, config, "chat", body, ids,
                             body.max_completion_tokens or body.max_tokens, top, chat=True)

    return app


async def _answer(engine: Engine, codec: TextCodec, metrics: ServerMetrics, config: ServerConfig, endpoint: str,
                  body: ChatRequest | CompletionRequest, ids: list[int], max_tokens: int | None,
                  logprobs: int | None, chat: bool) -> Response:
    limit = min(config.max_tokens_per_request or engine.context, engine.context)
    if max_tokens is not None and max_tokens > limit:
        raise BadInput(f"max_tokens is {max_tokens}, more than this server allows per request ({limit})")
    settings = body.settings(max_tokens or max(1, min(limit, engine.context - len(ids))), logprobs)
    answer = Answer(chat, config.name, len(ids), lambda token: codec.decode([token]))
    flight = InFlight(engine, ids, settings, answer.id, metrics, endpoint)  # QueueFull / BadInput raise here
    events = flight.events()
    if body.stream:
        try:
            first = await anext(events)  # an error raises here, before any byte is sent
        except BaseException:
            flight.close()
            raise
        return EventStream(_chunks(first, events, answer, body.include_usage), flight.close)
    try:
        async for event in events:
            answer.add(event)
    finally:
        flight.close()
    return JSONResponse(answer.body())


async def _chunks(first: TokenEvent, events: AsyncIterator[TokenEvent], answer: Answer,
                  include_usage: bool) -> AsyncIterator[str]:
    answer.add(first)
    yield sse(answer.chunk(first, first=True))
    async for event in events:
        answer.add(event)
        yield sse(answer.chunk(event, first=False))
    if include_usage:
        yield sse(answer.usage_chunk())
    yield sse("[DONE]")


class InFlight:
    """One submitted request as the HTTP layer sees it: its events from the engine thread, and one
    idempotent `close` (cancel if still running, record the metrics) for every way it can end."""

    def __init__(self, engine: Engine, ids: list[int], settings: RequestSettings, request_id: str,
                 metrics: ServerMetrics, endpoint: str) -> None:
        self.engine, self.metrics, self.endpoint, self.closed = engine, metrics, endpoint, False
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        try:
            self.request = engine.submit(ids, settings, self._deliver, request_id)
        except QueueFull:
            metrics.rejected.labels("queue_full").inc()
            raise

    def _deliver(self, event: TokenEvent) -> None:  # called from the engine thread
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the event loop has closed: the server is shutting down
            pass

    async def events(self) -> AsyncIterator[TokenEvent]:
        """The request's events until its last one."""
        while True:
            event = await self._queue.get()
            yield event
            if event.finish_reason is not None:
                return

    def close(self) -> None:
        """Cancel the request if it is still running (the client left) and record it, once."""
        if self.closed:
            return
        self.closed = True
        request = self.request
        if request.finish_reason is None:
            self.engine.cancel(request)
        self.metrics.finished(self.endpoint, request.finish_reason or "cancelled", len(request.prompt_ids),
                              len(request.generated), request.arrived, request.first_token_at, time.monotonic())


class EventStream(StreamingResponse):
    """Server-sent events that call `on_close` however the response ends: finished, or cut short because
    the client left (Starlette then stops the sending task, leaving the body generator to the garbage
    collector, which may take a long time to close it)."""

    def __init__(self, chunks: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(chunks, media_type="text/event-stream")
        self.on_close = on_close

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            self.on_close()


def _ready(served: ServedModel) -> Engine:
    if served.embedder is not None:
        raise BadInput(f"`{served.config.name}` is an encoder: it answers POST /v1/embeddings only")
    if served.engine is None:
        raise HTTPException(503, "the model is still loading: retry when /health answers 200")
    return served.engine


def _check_model(name: str, config: ServerConfig) -> None:
    if name != config.name:
        raise HTTPException(404, f"The model `{name}` does not exist: this server serves `{config.name}`")


def _completion_prompt(body: CompletionRequest, codec: TextCodec) -> list[int]:
    prompt = body.prompt
    if body.echo:
        raise BadInput("echo is not supported")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise BadInput("a list of prompts is not supported: send one request per prompt")
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise BadInput("the prompt is empty: give some text to continue")
        return codec.encode(prompt)
    vocab = codec.tokenizer.get_vocab_size()
    if not prompt or not all(0 <= token < vocab for token in prompt):
        raise BadInput(f"the prompt's token ids must be a non-empty list of ids in [0, {vocab})")
    return list(prompt)


def _api_key_check(api_key: str | None):
    async def check(request: Request) -> None:
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            raise HTTPException(401, "missing or wrong API key: send Authorization: Bearer KEY")
    return check


def _add_error_handlers(app: FastAPI, config: ServerConfig) -> None:
    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
            response = _error(413, f"the request body is over {config.max_body_bytes} bytes")
        else:
            response = await call_next(request)
        if config.replica:
            response.headers["x-onnxforge-replica"] = config.replica
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return _error(400, f"{where}: {first.get('msg')}" if where else str(first.get("msg")), param=where or None)

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, error: BadInput) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, error: QueueFull) -> JSONResponse:
        return _error(429, f"the server is busy ({error}): retry later", kind="rate_limit_error")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(error.status_code, "invalid_request_error")
        return _error(error.status_code, str(error.detail), kind=kind)


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, param), status_code=status)
