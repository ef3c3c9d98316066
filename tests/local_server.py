"""Throwaway HTTP servers on free loopback ports, for answers no simulator gives: a route of
one's own, or a real (simulated) ComfyUI behind a proxy that answers some routes otherwise."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from app.sim.fleet import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Override = Callable[[web.Request], Awaitable[web.StreamResponse | None]]  # None: pass it on
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@contextlib.asynccontextmanager
async def _serve(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    runner = web.AppRunner(app, shutdown_timeout=1.0)  # a handler that never ends is cut
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, host, port).start()
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def local_server(path: str, handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve GET `path` (an aiohttp route pattern) with `handler` on a loopback address; yields
    the base URL."""
    app = web.Application()
    app.router.add_get(path, handler)
    async with _serve(app, host) as url:
        yield url


@contextlib.asynccontextmanager
async def proxy_server(
    target: str, overrides: dict[tuple[str, str], Override]
) -> AsyncIterator[str]:
    """Everything goes to `target` (websockets too), except the (METHOD, path) routes in
    `overrides`, which answer as their handlers say (a handler's None passes it on)."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        own = overrides.get((request.method, request.path))
        answer = await own(request) if own is not None else None
        if answer is not None:
            return answer
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _forward_ws(request, session, target)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with session.request(
            request.method, target + request.path_qs, headers=headers, data=await request.read()
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=answer.status, body=body, headers=kept)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    try:
        async with _serve(app) as url:
            yield url
    finally:
        await session.close()


async def _forward_ws(
    request: web.Request, session: aiohttp.ClientSession, target: str
) -> web.WebSocketResponse:
    client_side = web.WebSocketResponse()
    await client_side.prepare(request)
    async with session.ws_connect(target + request.path_qs) as server_side:

        async def pump(source: Any, sink: Any) -> None:
            async for message in source:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
            await sink.close()

        await asyncio.gather(
            pump(server_side, client_side), pump(client_side, server_side), return_exceptions=True
        )
    return client_side
