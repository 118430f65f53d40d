"""The baseline: a bare aiohttp TLS endpoint that parses the AdmissionReview and allows it.
What a webhook costs at the least on this machine; our server is measured against it.

Given a JSON Patch file, it answers `/mutate` with that patch: what the API server spends
applying a mutating webhook's patch, apart from what the webhook spends making it."""

from __future__ import annotations

import asyncio
import base64
import ssl
import sys
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

PATCH = web.AppKey("patch", str)


def command(port: int, cert: Path, key: Path, patch_file: Path | None = None) -> list[str]:
    """How the benchmarks start it."""
    patch = [str(patch_file)] if patch_file else []
    return [sys.executable, "-m", "bench.baseline", str(port), str(cert), str(key), *patch]


async def review(request: web.Request) -> web.Response:
    data = orjson.loads(await request.read())
    response: dict[str, Any] = {"uid": data["request"]["uid"], "allowed": True}
    patch = request.app.get(PATCH)
    if patch and request.path == "/mutate":
        response.update(patch=patch, patchType="JSONPatch")
    answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def main(port: int, cert: str, key: str, patch_file: str | None = None) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    app = web.Application(client_max_size=7 * 1024 * 1024)
    if patch_file:
        app[PATCH] = base64.b64encode(Path(patch_file).read_bytes()).decode()
    app.router.add_post("/mutate", review)
    app.router.add_post("/validate", review)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), *sys.argv[2:]))
