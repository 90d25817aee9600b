"""A bare aiohttp pass-through proxy that logs nothing: the benchmark's practical limit.

    python bench/baseline.py --upstream http://127.0.0.1:8080/v1 --port 9000

It does what relaylog's forward handler does on the wire — read the body, forward method, path,
query and headers over a pooled keep-alive session, answer small bodies in one write and stream
the rest chunk by chunk — and nothing else: no Helicone headers, no ids, no recorder, no store.
Like relaylog it runs on uvloop when uvloop is installed (proxy.server.run picks the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.server import run

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
SKIP_REQUEST = HOP_BY_HOP | {"host", "content-length"}
SKIP_RESPONSE = HOP_BY_HOP | {"content-length", "content-encoding", "date", "server"}
BUFFER_LIMIT = 1024 * 1024

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    url = request.app[UPSTREAM] + request.rel_url.raw_path.removeprefix("/v1")
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    body = await request.read() if request.body_exists else None
    headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIP_REQUEST}
    async with request.app[SESSION].request(
        request.method, URL(url, encoded=True), data=body, headers=headers, allow_redirects=False
    ) as upstream:
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in SKIP_RESPONSE}
        length = upstream.content_length
        streamed = "text/event-stream" in upstream.headers.get("Content-Type", "")
        if not streamed and length is not None and length <= BUFFER_LIMIT:
            return web.Response(body=await upstream.read(), status=upstream.status, headers=out)
        response = web.StreamResponse(status=upstream.status, headers=out)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def create_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), trust_env=False
        ) as session:
            app[SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/v1/{tail:.*}", forward)
    return app


async def serve(upstream: str, host: str, port: int) -> None:
    runner = web.AppRunner(create_app(upstream), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = next(a for a in runner.addresses if isinstance(a, tuple))
    print(f"baseline listening on http://{host}:{bound[1]} | upstream {upstream}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="upstream base URL, e.g. .../v1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    run(serve(args.upstream, args.host, args.port))


if __name__ == "__main__":
    main()
