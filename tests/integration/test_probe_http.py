"""The probe's own HTTP client against raw servers on loopback: framing, keep-alive, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from app.core.health import Failure, WorkerHealth, WorkerState
from app.services.comfy_client import NOT_HTTP, ComfyClient
from app.services.monitor import FleetMonitor, MonitorTarget
from app.services.probe_http import BadHttp, ProbeHttp
from app.sim.fleet import SimInstance

pytestmark = pytest.mark.asyncio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    """A raw server; each connection is closed when its handler is done (from 3.12 on,
    leaving `async with server` waits until every connection is closed)."""

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)  # type: ignore[misc]
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture
async def client() -> AsyncIterator[ProbeHttp]:
    http = ProbeHttp()
    yield http
    http.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_content_length_in_pieces_and_keep_alive(client: ProbeHttp) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            assert request.startswith(b"GET /system_stats HTTP/1.1\r\n")
            body = b'{"ok": true}'
            for piece in (b"HTTP/1.1 200 OK\r\nContent-Le", b'ngth: 12\r\n\r\n{"ok"', body[5:]):
                writer.write(piece)
                await writer.drain()
        writer.close()

    server, url = await serve(handler)
    async with server:  # (from 3.12 on, leaving it waits for the handlers: close the client)
        answers = [await client.get(f"{url}/system_stats") for _ in range(3)]
        client.close()
    assert answers == [(200, b'{"ok": true}')] * 3
    assert connections == 1  # kept alive


async def test_chunked_and_two_at_once(client: ProbeHttp) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        await writer.drain()
        writer.write(b"3;ext=1\r\nefg\r\n0\r\n\r\n")
        await writer.drain()

    server, url = await serve(handler)
    async with server:
        answers = await client.get_all([f"{url}/a", f"{url}/b"])
    assert answers == [(200, b"abcdefg"), (200, b"abcdefg")]


async def test_a_closed_keep_alive_connection_is_retried_once(client: ProbeHttp) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # the server ends every connection after one answer

    server, url = await serve(handler)
    async with server:
        first = await client.get(f"{url}/x")
        second = await client.get(f"{url}/x")
    assert first == second == (200, b"ok")


async def test_not_http_and_refused(client: ProbeHttp) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    server, url = await serve(handler)
    async with server:
        with pytest.raises(BadHttp, match="not an HTTP answer"):
            await client.get(f"{url}/x")
    with pytest.raises(ConnectionRefusedError):
        await client.get(url + "/x")  # the server is gone now


async def test_pipelined_gets_are_answered_in_order_on_one_connection(client: ProbeHttp) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first, second = await read_request(reader), await read_request(reader)
        assert first.startswith(b"GET /system_stats ") and second.startswith(b"GET /prompt ")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstats"
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nqueue"
        )
        await writer.drain()
        await reader.read()  # until the client closes

    server, url = await serve(handler)
    answers: list[object] = []
    done = asyncio.Event()

    def collect(outcome: object) -> None:
        answers.append(outcome)
        done.set()

    async with server:
        client.request((f"{url}/system_stats", f"{url}/prompt"), collect)
        await done.wait()
        client.close()
    assert answers == [[(200, b"stats"), (500, b"queue")]]
    assert connections == 1


async def test_a_worker_that_does_not_speak_http_is_not_http_for_it_alone(
    sim_factory: Callable[..., SimInstance],
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n")
        await writer.drain()

    good = sim_factory("good")
    server, url = await serve(garbage)
    client = ComfyClient()
    monitor = FleetMonitor(client)
    heard: dict[str, list[WorkerHealth]] = {"good": [], "bad": []}
    monitor.subscribe(lambda h: heard[h.name].append(h))
    async with server:
        monitor.set_targets(
            [MonitorTarget("bad", "remote", url), MonitorTarget("good", "remote", good.url)]
        )
        try:
            while sum(h.state is WorkerState.ONLINE for h in heard["good"]) < 2 or not any(
                h.state is WorkerState.OFFLINE for h in heard["bad"]
            ):
                await asyncio.sleep(0.05)
        finally:
            await monitor.stop()
            await client.close()
    bad = next(h for h in heard["bad"] if h.state is WorkerState.OFFLINE)
    assert bad.failure is Failure.NOT_COMFYUI and bad.error is not None
    assert bad.error.startswith(NOT_HTTP)
