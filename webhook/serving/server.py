"""The HTTPS server: thin views over the engine, in the shape of aiohttp-demos.

`POST /mutate` and `POST /validate` answer AdmissionReviews on the TLS port, with
`GET /healthz` and `/readyz`; a second, plain-HTTP port (`--ops-listen`) serves the probes
and `/metrics`, so Prometheus and the kubelet need no client certificate where the TLS port
requires one. Calls we cannot read get a 4xx JSON error; nothing answers a 500 with a
traceback.

Every resource a caller can hold is bounded (`Limits`): connections, the time to send a
request's headers (aiohttp's keep-alive timer also runs before the first request) and its
body, idle keep-alive. Compressed bodies are refused: the API server never compresses, and
a small gzip body can expand without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import time
from asyncio import sslproto
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from policies.request import AdmissionRequest
from webhook import collector, logs
from webhook.engine import Engine, Outcome
from webhook.serving.admission import ReviewError, encode_answer, parse_review
from webhook.serving.metrics import Metrics

log = logging.getLogger("stateful_guard.server")

# An AdmissionReview can carry an object and an oldObject of ~1.5 MiB each; controller-runtime
# allows 7 MiB, and so do we (aiohttp's default is 1 MiB).
MAX_BODY = 7 * 1024 * 1024
JSON = "application/json"
SERVER_HEADER = "stateful-guard"
LOG_MESSAGE_LIMIT = 1000  # not aiohttp's, which names its and Python's versions


@dataclass(frozen=True)
class Limits:
    """What one caller can hold. The API server opens a few keep-alive connections per
    replica and sends each request at once, so these never slow it; a slow or idle client
    is cut off before it costs memory."""

    max_connections: int = 256  # past it, new connections are closed at once
    header_timeout: float = 10.0  # a connection must send a whole request head within this
    body_timeout: float = 10.0  # and its body within this (webhooks time out at 5 s)
    keepalive_timeout: float = 10.0  # idle connections close after this
    handshake_timeout: float = 10.0  # TLS handshake


Endpoint = Literal["mutate", "validate"]


class InFlight:
    """Counts requests being handled, so shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0
        self.last_activity = time.monotonic()
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self.last_activity = time.monotonic()
        self._idle.clear()

    def __exit__(self, *_: object) -> None:
        self.count -= 1
        self.last_activity = time.monotonic()
        if self.count == 0:
            self._idle.set()

    async def settled(self, *, quiet: float, timeout: float) -> bool:
        """Wait until nothing is in flight and nothing has started for `quiet` seconds: a
        client that connected just before the port closed sends its request a moment later,
        and closing its connection first would lose that request."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), remaining)
            except TimeoutError:
                return False
            still = quiet - (time.monotonic() - self.last_activity)
            if still <= 0:
                return True
            await asyncio.sleep(min(still, max(0.0, deadline - time.monotonic())))


Job = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class ServerState:
    engine: Engine
    metrics: Metrics
    ready: Callable[[], bool] = lambda: True
    jobs: list[Job] = field(default_factory=list)  # background loops, run while serving
    in_flight: InFlight = field(default_factory=InFlight)
    draining: bool = False  # set on SIGTERM
    limits: Limits = field(default_factory=Limits)
    # Given each answered request and its outcome, off the request's path: the Events that
    # record refused deletes, evictions and scales (webhook/cluster/events.py).
    record: Callable[[AdmissionRequest, Outcome], None] | None = None


STATE = web.AppKey("state", ServerState)


def json_error(status: int, message: str) -> web.Response:
    response = web.Response(
        status=status,
        body=orjson.dumps({"error": message, "status": status}),
        content_type=JSON,
    )
    response[REJECTION] = message  # logged by `errors_as_json`
    return response


REJECTION = web.ResponseKey("stateful_guard_rejection", str)


def _log_rejection(request: web.Request, status: int, message: str) -> None:
    """Every refused call leaves a line (a client sending the wrong thing learns nothing else
    from us); bounded, like every line we log."""
    if log.isEnabledFor(logging.INFO):
        logs.info(
            log,
            "rejected request",
            {
                "status": status,
                "method": request.method,
                "path": request.path[:100],
                "error": message[:LOG_MESSAGE_LIMIT],
                "peer": str(request.remote),
            },
        )


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error a client sees is JSON naming the problem; never a traceback."""
    state = request.app[STATE]
    try:
        with state.in_flight:
            response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        response = json_error(413, f"body larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason)
    except ConnectionError:
        # The client went away mid-request: nothing to answer, nothing wrong with us.
        log.debug("client disconnected", extra={"path": request.path})
        return json_error(400, "client disconnected")
    except Exception:
        log.exception("unexpected error", extra={"path": request.path})
        return json_error(500, "internal error; see the webhook's logs")
    rejection = response.get(REJECTION)
    if rejection is not None:
        _log_rejection(request, response.status, rejection)
    if state.draining:
        response.force_close()  # the client reconnects, to a replica that stays
    return response


async def _review(request: web.Request, endpoint: Endpoint) -> web.Response:
    state = request.app[STATE]
    started = time.perf_counter()
    outcome: Outcome | None = None
    try:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if request.content_type != JSON:
            sent = request.headers.get("Content-Type")
            response = json_error(415, f"content type must be {JSON}, got {sent or 'none'}")
        elif encoding != "identity":
            response = json_error(415, f"Content-Encoding {encoding[:20]!r} is not accepted")
        elif request.content_length is not None and request.content_length > MAX_BODY:
            response = json_error(413, f"body larger than {MAX_BODY} bytes")
        else:
            try:
                async with asyncio.timeout(state.limits.body_timeout):
                    body = await request.read()
                review = parse_review(body)
            except TimeoutError:
                response = json_error(
                    408, f"body not received within {state.limits.body_timeout} s"
                )
            except ReviewError as exc:
                response = json_error(exc.status, exc.message)
            else:
                admission = review.request
                engine = state.engine
                outcome = (
                    engine.mutate(admission) if endpoint == "mutate" else engine.validate(admission)
                )
                _log_outcome(endpoint, admission.uid, outcome)
                if state.record is not None:
                    state.record(admission, outcome)
                answer = encode_answer(admission.uid, outcome)
                response = web.Response(body=answer, content_type=JSON)
    except web.HTTPRequestEntityTooLarge:
        response = json_error(413, f"body larger than {MAX_BODY} bytes")
    state.metrics.record(endpoint, response.status, time.perf_counter() - started, outcome)
    return response


def _log_outcome(endpoint: Endpoint, uid: str, outcome: Outcome) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    for verdict in outcome.verdicts:
        if verdict.messages:
            logs.info(
                log,
                "policy decision",
                {
                    "endpoint": endpoint,
                    "uid": uid,
                    "policy": verdict.policy,
                    "mode": verdict.mode.value,
                    "decision": verdict.decision,
                    # bounded whatever the request: a few messages, each a few lines long
                    "messages": [m[:LOG_MESSAGE_LIMIT] for m in verdict.messages[:10]],
                },
            )


async def mutate(request: web.Request) -> web.Response:
    return await _review(request, "mutate")


async def validate(request: web.Request) -> web.Response:
    return await _review(request, "validate")


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.draining:
        return web.json_response({"status": "shutting down"}, status=503)
    if state.ready():
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "waiting for the cluster view"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/mutate", mutate)
    app.router.add_post("/validate", validate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def _server_header(_: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


def make_runner(app: web.Application, *, shutdown_timeout: float = 20.0) -> web.AppRunner:
    """The runner for one of our apps, with its state's limits."""
    limits = app[STATE].limits
    return web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        # Before the first request aiohttp's keep-alive timer bounds the wait for a request
        # head; after a response it bounds idleness.
        keepalive_timeout=min(limits.header_timeout, limits.keepalive_timeout),
        auto_decompress=False,  # and Content-Encoding is refused anyway
    )


class GuardedSite(web.TCPSite):
    """A TCP site that caps open connections, TLS handshakes included: past the cap a new
    connection is closed at once, before any handshake (the API server retries on another),
    so many idle or slow clients cannot take the memory the webhook needs. TLS is layered
    here, per connection, with a smaller read buffer than asyncio's (TLS records are at most
    16 KiB; asyncio gives each connection 256 KiB, which is most of what an idle one costs)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: Limits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._limits = limits
        self._tls = ssl_context
        self.open = 0
        self.refused = 0

    def _closed(self) -> None:
        self.open -= 1

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.BaseProtocol:
            if self.open >= self._limits.max_connections:
                self.refused += 1
                return _Refuse()
            self.open += 1
            if self._tls is None:
                return _Counted(server(), self._closed)
            return _TLS(
                loop,
                server(),
                self._tls,
                None,
                server_side=True,
                ssl_handshake_timeout=self._limits.handshake_timeout,
                closed=self._closed,
            )

        try:
            self._server = await loop.create_server(
                protocol, self._host, self._port, backlog=self._backlog
            )
        except OSError as exc:
            where = f"{_url_host(str(self._host))}:{self._port}"
            reason = os.strerror(exc.errno) if exc.errno else str(exc)  # not asyncio's wording
            raise ListenError(exc.errno, f"cannot listen on {where}: {reason}") from None
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose, for port 0)."""
        return int(self._bound_port or self._port)


class ListenError(OSError):
    """An address we cannot listen on (in use, not ours, privileged): the message says which."""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _TLS(sslproto.SSLProtocol):
    max_size = 32 * 1024  # asyncio's default read buffer is 256 KiB per connection

    def __init__(self, *args: Any, closed: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_closed = closed

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._on_closed()


class _Counted(asyncio.Protocol):
    """A plain connection, counted until it closes."""

    def __init__(self, handler: asyncio.Protocol, closed: Callable[[], None]) -> None:
        self._handler, self._on_closed = handler, closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._handler.connection_lost(exc)
        finally:
            self._on_closed()


class _Refuse(asyncio.Protocol):
    """The protocol of a connection past the cap: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Run the state's jobs while serving; stop them on shutdown."""
    state = app[STATE]
    tasks = [asyncio.create_task(job()) for job in state.jobs]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    shutdown_timeout: float,
    shutdown_delay: float = 0.0,
    ops: tuple[str, int] | None = None,
    started: Callable[[str, str | None], None] = lambda _listen, _ops: None,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain: for `shutdown_delay` seconds keep serving
    while /readyz answers 503 (so the Service stops sending here) and every response closes
    its connection (so clients reconnect to another replica); then stop listening, let the
    requests in flight finish, and return. Kubernetes removes a terminating pod from the
    Service's endpoints asynchronously: without the delay, requests still routed here would
    meet a closed port.

    Not `web.run_app`: it cancels its main task on a signal, and on Python 3.11+ a cancelled
    shutdown stops waiting for handlers (aiohttp's RequestHandler.shutdown re-raises when its
    task is cancelling). And `runner.cleanup()` alone is not enough either: it closes every
    connection first, after which aiohttp drops the rest of a body still arriving
    (RequestHandler.data_received returns once `_close` is set). So: stop listening, wait for
    the requests in flight, then clean up. A second SIGINT or SIGTERM while draining exits at
    once (a person pressing Ctrl-C twice means it). `started` is told the URLs listened on.
    """
    limits = app[STATE].limits
    runner = make_runner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    ops_runner: web.AppRunner | None = None
    if ops is not None:
        ops_runner = make_runner(make_ops_app(app[STATE]))
        await ops_runner.setup()
    collector.settle()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def signalled(sig: int) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            os._exit(128 + sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled, sig)
    try:
        site = GuardedSite(runner, host, port, limits=limits, ssl_context=ssl_context)
        await site.start()
        ops_url = None
        if ops_runner is not None and ops is not None:
            ops_site = GuardedSite(ops_runner, ops[0], ops[1], limits=limits)
            await ops_site.start()
            ops_url = f"http://{_url_host(ops[0])}:{ops_site.port}"
        started(f"https://{_url_host(host)}:{site.port}", ops_url)
        await stop.wait()
        state = app[STATE]
        state.draining = True
        log.info(
            "draining: not ready, closing connections after each response",
            extra={"seconds": shutdown_delay},
        )
        await asyncio.sleep(shutdown_delay)
        log.info("shutting down: no new connections, finishing requests in flight")
        await site.stop()
        in_flight = app[STATE].in_flight
        if not await in_flight.settled(quiet=0.5, timeout=shutdown_timeout):
            log.warning("shutdown timeout: cutting off requests", extra={"open": in_flight.count})
    finally:
        await runner.cleanup()
        if ops_runner is not None:
            await ops_runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def make_app(state: ServerState) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors_as_json])
    app[STATE] = state
    setup_routes(app)
    app.on_response_prepare.append(_server_header)
    app.cleanup_ctx.append(_background)
    return app


def make_ops_app(state: ServerState) -> web.Application:
    """Probes and Prometheus on their own plain-HTTP port: `/healthz`, `/readyz`, `/metrics`."""
    app = web.Application(client_max_size=1024, middlewares=[errors_as_json])
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_response_prepare.append(_server_header)
    return app
