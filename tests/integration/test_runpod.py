"""The Runpod client against the simulated Runpod API (a real server process on loopback), and
both held against Runpod's own OpenAPI spec: every request the client sends, every answer the
simulator gives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from app.core.cloud import Pod, PodRecipe
from app.services.runpod import RunpodClient, RunpodError
from app.sim.fleet import free_port
from tests.integration.runpod_helpers import KEY, READONLY, SimRunpod
from tests.local_server import local_server
from tests.runpod_contract import Exchange, check_answer, check_request

pytestmark = pytest.mark.asyncio


@dataclass
class Recorder:
    """A pass-through in front of the simulator that keeps every exchange."""

    target: str
    exchanges: list[Exchange] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, f"{self.target}{request.path_qs}", data=raw or None, headers=headers
            ) as answer,
        ):
            kind = answer.headers.get("Content-Type", "")
            if kind.startswith("text/event-stream"):  # kept open: passed on as it comes
                return await self._stream(request, answer)
            text = await answer.text()
            parsed = json.loads(text) if text and "json" in kind else None
            kept = {
                k: v
                for k, v in answer.headers.items()
                if k.lower()
                not in (
                    "content-length",
                    "transfer-encoding",
                    "content-encoding",
                    "date",
                    "server",
                    "connection",
                )
            }
            self.exchanges.append(
                Exchange(request.method, request.path, body, answer.status, kind, parsed, kept)
            )
            return web.Response(status=answer.status, body=text.encode(), headers=kept)

    async def _stream(
        self, request: web.Request, answer: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        kept = {k: v for k, v in answer.headers.items() if k.lower() in STREAM_HEADERS}
        self.exchanges.append(
            Exchange(
                request.method, request.path, None, answer.status, kept["Content-Type"], None, kept
            )
        )
        response = web.StreamResponse(status=answer.status, headers=kept)
        await response.prepare(request)
        while request.transport is not None and not request.transport.is_closing():
            try:  # until the client goes (aiohttp does not cancel a handler when it does)
                chunk = await asyncio.wait_for(answer.content.readany(), 0.2)
            except TimeoutError:
                continue
            if not chunk:
                break
            await response.write(chunk)
        return response


STREAM_HEADERS = {
    "content-type",
    "cache-control",
    "x-accel-buffering",
    "ratelimit",
    "ratelimit-policy",
}


@contextlib.asynccontextmanager
async def recorded(target: str) -> AsyncIterator[tuple[str, Recorder]]:
    recorder = Recorder(target)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        await runner.cleanup()


async def status_becomes(client: RunpodClient, pod_id: str, status: str) -> Pod:
    deadline = time.monotonic() + 15
    while (pod := await client.pod(pod_id)).status != status:
        assert time.monotonic() < deadline, f"{pod_id} stayed {pod.status}"
        await asyncio.sleep(0.05)
    return pod


class Waits:
    """The client's sleep, recorded (backoff and Retry-After without waiting them out)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


async def test_every_request_and_answer_keeps_runpods_contract(runpod: SimRunpod) -> None:
    async with recorded(runpod.url) as (url, recorder), aiohttp.ClientSession() as session:
        client = RunpodClient(session, KEY, url, sleep=Waits())
        assert await client.pods() == []
        types = await client.gpu_types()
        assert any(t.id == "NVIDIA GeForce RTX 4090" and t.secure_per_h > 0 for t in types)
        pod = await client.create(PodRecipe(), "comfyfleet-a")
        assert pod.status == "PROVISIONING" and pod.cost_per_h > 0
        running = await status_becomes(client, pod.id, "RUNNING")
        assert running.uptime_s is not None and running.gpu_util == (0,)
        assert set(running.actions) == {"stop", "restart", "terminate"}
        with pytest.raises(RunpodError) as refused:
            await client.act(pod.id, "start")  # not while it runs
        assert refused.value.status == 409
        stopped = await client.act(pod.id, "stop")
        assert stopped is not None and stopped.status == "EXITED" and stopped.cost_per_h == 0.0
        started = await client.act(pod.id, "start")
        assert started is not None and started.status == "PROVISIONING"
        assert await client.logs(pod.id)
        costs = await client.pod_costs(time.time() - 3600)
        assert costs.by_pod[pod.id] > 0 and costs.total == pytest.approx(sum(costs.by_pod.values()))
        image = PodRecipe(image="runpod/comfyui:latest", template_id=None, network_volume="vol_1",
                          env=(("COMFY_ARGS", "--listen"),), cloud="COMMUNITY")  # fmt: skip
        other = await client.create(image, "comfyfleet-b")
        assert await client.act(other.id, "terminate") is None
        with pytest.raises(RunpodError) as gone:
            await client.pod(other.id)
        assert gone.value.status == 404
        for key, status in (("rp_wrong", 401), (READONLY, 403)):
            with pytest.raises(RunpodError) as denied:
                await RunpodClient(session, key, url).pods()
            assert denied.value.status == status
        async with session.post(
            f"{url}/v2/pods",
            json={"name": "x", "bogus": 1},
            headers={"Authorization": f"Bearer {KEY}"},
        ) as raw:
            assert raw.status == 422  # the simulator refuses what breaks the contract
    sent = [
        e for e in recorder.exchanges if not (e.method == "POST" and e.body and "bogus" in e.body)
    ]
    assert len(recorder.exchanges) >= 15
    for exchange in sent:
        check_request(exchange.method, exchange.path, exchange.body)
    for exchange in recorder.exchanges:
        check_answer(exchange)
    assert {e.status for e in recorder.exchanges} >= {200, 201, 204, 401, 403, 404, 409, 422}


async def test_a_429_waits_what_retry_after_says(runpod: SimRunpod) -> None:
    runpod.fail_next_create("ratelimit")
    waits = Waits()
    async with aiohttp.ClientSession() as session:
        pod = await RunpodClient(session, KEY, runpod.url, sleep=waits).create(PodRecipe(), "p")
    assert pod.name == "p" and waits.seconds == [1.0]


async def test_a_5xx_after_create_never_leaves_two_pods(runpod: SimRunpod) -> None:
    runpod.fail_next_create("created-then-500")
    async with aiohttp.ClientSession() as session:
        client = RunpodClient(session, KEY, runpod.url, sleep=Waits())
        pod = await client.create(PodRecipe(), "comfyfleet-once")
        pods = await client.pods()
    assert [p.id for p in pods] == [pod.id]


async def test_no_capacity_and_no_balance_are_explained(runpod: SimRunpod) -> None:
    async with aiohttp.ClientSession() as session:
        client = RunpodClient(session, KEY, runpod.url, sleep=Waits())
        for how, status, words in (
            ("capacity", 400, "no free GPU of that type right now"),
            ("balance", 402, "balance is too low"),
            ("contract", 422, "rejected the request as invalid"),
        ):
            runpod.fail_next_create(how)
            with pytest.raises(RunpodError) as refused:
                await client.create(PodRecipe(), f"p-{how}")
            assert refused.value.status == status and words in str(refused.value)
        assert await client.pods() == []  # none of them billed a pod


async def test_the_log_stream_stays_open_and_the_backfill_is_read_without_waiting_for_its_end(
    runpod: SimRunpod,
) -> None:
    """GET /v2/pods/{id}/logs is Server-Sent Events kept open (the spec's getPodLogs): `tail`
    lines backfilled, then new ones. `logs` returns the backfill; `follow_logs` goes on."""
    async with aiohttp.ClientSession() as session:
        client = RunpodClient(session, KEY, runpod.url, sleep=Waits())
        pod = await client.create(PodRecipe(), "comfyfleet-logs")
        await status_becomes(client, pod.id, "RUNNING")
        headers = {"Authorization": f"Bearer {KEY}"}
        url = f"{runpod.url}/v2/pods/{pod.id}/logs"
        async with session.get(url, params={"tail": "2"}, headers=headers) as raw:
            backfill = [await raw.content.readline() for _ in range(6)]  # 2 × id, data, blank
            assert [json.loads(b[5:])["line"] for b in backfill if b.startswith(b"data:")] == [
                "container created, starting",
                "container running",
            ]
            with pytest.raises(TimeoutError):  # open, not ended
                await asyncio.wait_for(raw.content.readline(), 0.5)
        async with session.get(url, params={"tail": "5001"}, headers=headers) as refused:
            assert refused.status == 400
        assert await asyncio.wait_for(client.logs(pod.id, 2), 10) == [
            "container created, starting",
            "container running",
        ]
        lines = client.follow_logs(pod.id, 1)
        assert await asyncio.wait_for(anext(lines), 10) == "container running"
        await client.act(pod.id, "stop")
        assert await asyncio.wait_for(anext(lines), 10) == "stop requested"
        await lines.aclose()


UNEXPECTED = [
    ("<html><body>502 Bad Gateway</body></html>", "text/html", "not JSON"),
    ("[]", "application/json", "not an object"),
    ("null", "application/json", "not an object"),
    ('{"pods": [1, 2]}', "application/json", "for the pods: not in its API's shape"),
    ('{"pods": [{"gpu": 5}]}', "application/json", "for the pods: not in its API's shape"),
    ('{"pods": {"a": 1}}', "application/json", "for the pods: not in its API's shape"),
]


@pytest.mark.parametrize(("body", "kind", "said"), UNEXPECTED)
async def test_an_unexpected_answer_is_said_in_words(body: str, kind: str, said: str) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=kind)

    async with local_server("/v2/pods", answer) as url, aiohttp.ClientSession() as session:
        with pytest.raises(RunpodError, match="Runpod answered something unexpected") as caught:
            await RunpodClient(session, KEY, url, sleep=Waits()).pods()
    assert said in str(caught.value)


async def test_a_runpod_that_never_answers_is_said_within_the_timeout() -> None:
    heard: list[str] = []

    async def never(request: web.Request) -> web.Response:
        heard.append(request.path)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with local_server("/v2/pods{rest:.*}", never) as url, aiohttp.ClientSession() as session:
        waits = Waits()
        client = RunpodClient(session, KEY, url, sleep=waits, timeout_s=1)
        for asked in (client.pods(), client.logs("pod-1", 10)):
            with pytest.raises(RunpodError, match=r"Runpod did not answer within 1 s \(http://127"):
                await asked
    # said at once, not retried four times: one request each, no backoff waited
    assert heard == ["/v2/pods", "/v2/pods/pod-1/logs"] and waits.seconds == []
