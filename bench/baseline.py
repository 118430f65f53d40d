"""The baseline: a bare aiohttp TLS endpoint that parses the AdmissionReview and allows it.
What a webhook costs at the least on this machine; our server is measured against it."""

from __future__ import annotations

import asyncio
import ssl
import sys

import orjson
from aiohttp import web


async def review(request: web.Request) -> web.Response:
    data = orjson.loads(await request.read())
    answer = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": data["request"]["uid"], "allowed": True},
    }
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def main(port: int, cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    app = web.Application(client_max_size=7 * 1024 * 1024)
    app.router.add_post("/mutate", review)
    app.router.add_post("/validate", review)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
