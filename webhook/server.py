"""The HTTPS server: thin views over the engine, in the shape of aiohttp-demos.

`POST /mutate` and `POST /validate` answer AdmissionReviews; `GET /healthz`, `/readyz` and
`/metrics` serve probes and Prometheus. Calls we cannot read get a 4xx JSON error; nothing
answers a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from policies.base import Create
from webhook import collector, logs
from webhook.admission import ReviewError, encode_answer, parse_review
from webhook.engine import Engine, Outcome, one_line
from webhook.metrics import Metrics
from webhook.writer import ClusterWriter

log = logging.getLogger("stateful_guard.server")

# An AdmissionReview can carry an object and an oldObject of ~1.5 MiB each; controller-runtime
# allows 7 MiB, and so do we (aiohttp's default is 1 MiB).
MAX_BODY = 7 * 1024 * 1024
JSON = "application/json"

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
    writer: ClusterWriter | None = None  # performs side effects; None without a cluster
    jobs: list[Job] = field(default_factory=list)  # background loops, run while serving
    in_flight: InFlight = field(default_factory=InFlight)
    effects: set[asyncio.Task[None]] = field(default_factory=set)
    draining: bool = False  # set on SIGTERM


STATE = web.AppKey("state", ServerState)


def json_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message, "status": status}),
        content_type=JSON,
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
        return json_error(413, f"body larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except Exception:
        log.exception("unexpected error", extra={"path": request.path})
        return json_error(500, "internal error; see the webhook's logs")
    if state.draining:
        response.force_close()  # the client reconnects, to a replica that stays
    return response


async def _review(request: web.Request, endpoint: Endpoint) -> web.Response:
    state = request.app[STATE]
    started = time.perf_counter()
    outcome: Outcome | None = None
    try:
        if request.content_type != JSON:
            response = json_error(415, f"content type must be {JSON}, got {request.content_type}")
        elif request.content_length is not None and request.content_length > MAX_BODY:
            response = json_error(413, f"body larger than {MAX_BODY} bytes")
        else:
            try:
                review = parse_review(await request.read())
            except ReviewError as exc:
                response = json_error(exc.status, exc.message)
            else:
                admission = review.request
                engine = state.engine
                outcome = (
                    engine.mutate(admission) if endpoint == "mutate" else engine.validate(admission)
                )
                _perform_side_effects(state, admission.namespace, outcome)
                _log_outcome(endpoint, admission.uid, outcome)
                answer = encode_answer(admission.uid, outcome)
                response = web.Response(body=answer, content_type=JSON)
    except web.HTTPRequestEntityTooLarge:
        response = json_error(413, f"body larger than {MAX_BODY} bytes")
    state.metrics.record(endpoint, response.status, time.perf_counter() - started, outcome)
    return response


def _perform_side_effects(state: ServerState, namespace: str, outcome: Outcome) -> None:
    """Start the enforced side effects off the request path (no request waits on an API call);
    without a cluster connection, say so in the answer."""
    for policy, effect in outcome.side_effects:
        if state.writer is None:
            outcome.warnings.append(
                one_line(f"[{policy}] cannot {effect.description}: no cluster connection")
            )
            state.metrics.side_effects.labels(policy, "skipped").inc()
            continue
        task = asyncio.create_task(_side_effect(state, state.writer, policy, effect, namespace))
        state.effects.add(task)
        task.add_done_callback(state.effects.discard)


async def _side_effect(
    state: ServerState, writer: ClusterWriter, policy: str, effect: Create, namespace: str
) -> None:
    try:
        result = await asyncio.to_thread(writer.create, effect, namespace)
    except Exception as exc:  # logged and counted; the request was already answered
        log.warning(
            "side effect failed",
            extra={"policy": policy, "effect": effect.description, "error": str(exc)},
        )
        result = "failed"
    else:
        log.info(
            "side effect", extra={"policy": policy, "effect": effect.description, "result": result}
        )
    state.metrics.side_effects.labels(policy, result).inc()


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
                    "messages": list(verdict.messages),
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
    app.router.add_get("/metrics", metrics)


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Run the state's jobs while serving; on shutdown let side effects finish, then stop."""
    state = app[STATE]
    tasks = [asyncio.create_task(job()) for job in state.jobs]
    yield
    if state.effects:
        await asyncio.wait(state.effects, timeout=10)
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
    started: Callable[[], None] = lambda: None,
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
    the requests in flight, then clean up.
    """
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    collector.settle()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        started()
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
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def make_app(state: ServerState) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors_as_json])
    app[STATE] = state
    setup_routes(app)
    app.cleanup_ctx.append(_background)
    return app
