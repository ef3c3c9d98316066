"""A simulated Runpod REST v2 API (https://api.runpod.io/v2), for tests and the demo.

`python -m app.sim.runpod --port N [--provisioning-s S]
[--starting-s S] [--fail WHAT …]` prints `{"port": N}` when it listens on 127.0.0.1; the keys it
takes come from COMFYFLEET_SIM_RUNPOD_KEY and COMFYFLEET_SIM_RUNPOD_READONLY_KEY.

From REFERENCE §8 and Runpod's OpenAPI spec (shared/runpod/openapi-v2.json), which a contract
test holds every answer against: bearer auth (401 without a valid key, 403 for a key without
access), pods going PROVISIONING → STARTING → RUNNING with delays, the actions each state allows
(409 otherwise; terminate → 204), cost per hour while not EXITED or TERMINATED, accruing per
second into /v2/billing/pods, the GPU catalog with prices, logs as an event stream, RFC 9457
problems, RateLimit headers on every answer. `--fail` queues the next creates' failures, in
order: `capacity` (400), `balance` (402), `contract` (422), `ratelimit` (429, Retry-After 1),
`created-then-500` (the pod is made, the answer is a 500).

With `--comfy-root DIR`, each pod that is RUNNING is backed by a simulated ComfyUI (`python -m
app.sim`, its files under DIR/<pod id>), reached through a stand-in for Runpod's proxy that
answers 502 until that ComfyUI is up (REFERENCE §8: 502 while nothing listens on the port). Such
pods are given ids that are the loopback port of their proxy, so that the proxy address form
`http://127.0.0.1:{pod}` reaches them (the real one is `https://{pod}-{port}.proxy.runpod.net`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from app.sim.fleet import SimInstance, free_port, start_sim

ALLOWED = {  # REFERENCE §8: the actions each state allows
    "PROVISIONING": ["stop", "terminate"],
    "STARTING": ["stop", "terminate"],
    "RUNNING": ["stop", "restart", "terminate"],
    "EXITED": ["start", "terminate"],
    "ERROR": ["start", "terminate"],
    "TERMINATED": [],
}
CATALOG = [  # USD per GPU per hour (secure, community): the 4090 as the spec's example, the rest
    # illustrative (no recording of Runpod's prices)
    ("NVIDIA GeForce RTX 4090", "RTX 4090", "ADA_24", 24, 0.44, 0.31, 8),  # the spec's example
    ("NVIDIA RTX A5000", "RTX A5000", "AMPERE_24", 24, 0.27, 0.16, 8),
    ("NVIDIA L40S", "L40S", "ADA_48_PRO", 48, 0.86, 0.79, 8),
    ("NVIDIA H100 80GB HBM3", "H100 SXM", "HOPPER_141", 80, 2.69, 2.39, 8),
    ("NVIDIA H200", "H200 SXM", "HOPPER_141", 141, 3.59, 3.19, 8),
]
BILLED = ("PROVISIONING", "STARTING", "RUNNING")  # cost is 0.0 only when EXITED or TERMINATED
TEMPLATES = {"m21ynvo8yo", "cw3nka7d08", "2lv7ev3wfp"}  # REFERENCE §8: ComfyUI templates
RATE_LIMIT = '"minute";r=59;t=60, "hour";r=2999;t=3600, "day";r=49999;t=86400'
LOG_POLL_S = 0.2  # how often an open log stream looks for new lines
RATE_POLICY = '"minute";q=60;w=60, "hour";q=3000;w=3600, "day";q=50000;w=86400'


def _now_iso(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SimPod:
    id: str
    name: str
    image: str
    gpu_id: str
    gpu_count: int
    cloud: str
    ports: list[str]
    env: dict[str, str]
    price: float  # per GPU per hour, for its cloud
    created: float = field(default_factory=time.time)
    phase_from: float = field(default_factory=time.monotonic)
    phase: str = "PROVISIONING"
    billed_s: float = 0.0  # seconds that cost money so far
    billed_until: float = field(default_factory=time.monotonic)
    started: float | None = None
    logs: list[str] = field(default_factory=list)


class RunpodSim:
    def __init__(
        self,
        api_key: str = "sim-runpod-key",
        readonly_key: str = "sim-readonly-key",
        provisioning_s: float = 1.0,
        starting_s: float = 1.0,
        failures: list[str] | None = None,
        comfy_root: Path | None = None,
    ) -> None:
        self.api_key, self.readonly_key = api_key, readonly_key
        self.provisioning_s, self.starting_s = provisioning_s, starting_s
        self.failures = list(failures or [])
        self.pods: dict[str, SimPod] = {}
        self.comfy_root = comfy_root
        self.backing: dict[str, PodComfy] = {}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._auth])
        app.router.add_get("/v2/pods", self.list_pods)
        app.router.add_post("/v2/pods", self.create_pod)
        app.router.add_get("/v2/pods/{id}", self.get_pod)
        app.router.add_delete("/v2/pods/{id}", self.delete_pod)
        app.router.add_post("/v2/pods/{id}/action", self.action)
        app.router.add_get("/v2/pods/{id}/logs", self.logs)
        app.router.add_get("/v2/catalog/gpus", self.catalog)
        app.router.add_get("/v2/billing/pods", self.billing)
        app.router.add_post("/sim/fail", self.queue_failure)  # the tests' own knob
        return app

    # plumbing

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            response = problem(404, "Not Found", f"no route {request.path}")
        except web.HTTPMethodNotAllowed:
            response = problem(405, "Method Not Allowed", f"{request.method} {request.path}")
        if not response.prepared:
            response.headers["RateLimit"] = RATE_LIMIT
            response.headers["RateLimit-Policy"] = RATE_POLICY
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/sim/"):
            response: web.StreamResponse = await handler(request)
            return response
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return problem(401, "Unauthorized", "missing bearer token")
        key = header.removeprefix("Bearer ")
        if key == self.readonly_key:
            return problem(403, "Forbidden", "this API key has no access to pods")
        if key != self.api_key:
            return problem(401, "Unauthorized", "invalid API key")
        response = await handler(request)
        return response

    def _advance(self, pod: SimPod) -> None:
        """Phases move with time; a pod costs money until it is stopped or terminated."""
        now = time.monotonic()
        if pod.phase in BILLED:
            pod.billed_s += now - pod.billed_until
        pod.billed_until = now
        if pod.phase == "PROVISIONING" and now - pod.phase_from >= self.provisioning_s:
            self._enter(pod, "STARTING", pod.phase_from + self.provisioning_s)
            pod.logs.append("container created, starting")
        if pod.phase == "STARTING" and now - pod.phase_from >= self.starting_s:
            started = pod.phase_from + self.starting_s
            self._enter(pod, "RUNNING", started)
            pod.started = time.time() - (now - started)
            pod.logs.append("container running")

    def _enter(self, pod: SimPod, phase: str, at: float | None = None) -> None:
        pod.phase, pod.phase_from = phase, time.monotonic() if at is None else at
        backing = self.backing.get(pod.id)
        if backing is not None:
            backing.follow(pod)

    def _pod(self, request: web.Request) -> SimPod:
        pod = self.pods.get(request.match_info["id"])
        if pod is None or pod.phase == "TERMINATED":
            raise _Problem(404, "Not Found", "pod not found")
        self._advance(pod)
        return pod

    def pod_json(self, pod: SimPod) -> dict[str, Any]:
        running = pod.phase == "RUNNING"
        billing = pod.phase in BILLED
        return {
            "id": pod.id,
            "name": pod.name,
            "status": pod.phase,
            "actions": ALLOWED[pod.phase],
            "image": pod.image,
            "args": "",
            "disk": 50,
            "mounts": {},
            "ports": pod.ports,
            "env": pod.env,
            "registry": None,
            "gpu": {"id": pod.gpu_id, "count": pod.gpu_count},
            "cloud": pod.cloud,
            "dataCenterId": "US-TX-3",
            "cudaVersion": "12.8",
            "ssh": {"proxy": None, "direct": None},
            "template": None,
            "cost": round(pod.price * pod.gpu_count, 4) if billing else 0.0,
            "locked": False,
            "runtime": (
                {
                    "uptime": int(time.time() - (pod.started or time.time())),
                    "gpus": [{"util": 0, "memoryUtil": 0} for _ in range(pod.gpu_count)],
                    "cpu": {"util": 3},
                    "memory": {"util": 12},
                    "ports": [
                        {
                            "private": int(p.split("/")[0]),
                            "public": None,
                            "type": "http",
                            "ip": None,
                        }
                        for p in pod.ports
                        if p.endswith("/http")
                    ],
                }
                if running
                else None
            ),
            "createdAt": _now_iso(pod.created),
            "startedAt": None if pod.started is None else _now_iso(pod.started),
            "globalNetworking": {"enabled": False},
        }

    # routes

    async def list_pods(self, request: web.Request) -> web.Response:
        for pod in self.pods.values():
            self._advance(pod)
        live = [self.pod_json(p) for p in self.pods.values() if p.phase != "TERMINATED"]
        return web.json_response({"pods": live})

    async def get_pod(self, request: web.Request) -> web.Response:
        return await _answer(lambda: web.json_response(self.pod_json(self._pod(request))))

    async def create_pod(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return problem(400, "Bad Request", "the body is not JSON")
        if not isinstance(body, dict):
            return problem(422, "Unprocessable Entity", "the body must be an object")
        failure = self.failures.pop(0) if self.failures else ""
        if failure == "ratelimit":
            answer = problem(429, "Too Many Requests", "rate limit exceeded for window minute")
            answer.headers["Retry-After"] = "1"
            return answer
        if failure == "balance":
            return problem(402, "Payment Required", "insufficient balance to create this pod")
        errors = _contract_errors(body)
        if failure == "contract" or errors:
            detail = "the request does not match the API contract"
            return problem(422, "Unprocessable Entity", detail, errors or ["$: rejected"])
        gpu = body["gpu"]
        found = next((g for g in CATALOG if g[0] == gpu["id"]), None)
        if found is None:
            return problem(400, "Bad Request", f"unknown GPU type: {gpu['id']}")
        if failure == "capacity":
            detail = f"no capacity for {gpu['id']} in the requested cloud right now"
            return problem(400, "Bad Request", detail)
        template = body.get("templateId")
        if template is not None and template not in TEMPLATES:
            return problem(404, "Not Found", f"template {template} not found")
        cloud = body.get("cloud", "SECURE")
        pod = SimPod(
            id=self._new_id(),
            name=body["name"],
            image=body.get("image") or f"(the image of template {template})",
            gpu_id=gpu["id"],
            gpu_count=int(gpu.get("count", 1)),
            cloud=cloud,
            ports=list(body.get("ports") or []),
            env=dict(body.get("env") or {}),
            price=found[4] if cloud == "SECURE" else found[5],
        )
        pod.logs.append(f"pod {pod.name} provisioning on {pod.gpu_count}× {pod.gpu_id}")
        self.pods[pod.id] = pod
        if self.comfy_root is not None:
            self.backing[pod.id] = PodComfy(self.comfy_root / pod.id, int(pod.id))
            await self.backing[pod.id].open_proxy()
        if failure == "created-then-500":
            return problem(500, "Internal Server Error", "upstream timeout")
        return web.json_response(self.pod_json(pod), status=201)

    async def action(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return problem(400, "Bad Request", "the body is not JSON")
        verb = body.get("action") if isinstance(body, dict) else None
        if verb not in ("start", "stop", "restart", "terminate") or len(body) != 1:
            return problem(
                422, "Unprocessable Entity", "action must be start|stop|restart|terminate"
            )

        def act() -> web.Response:
            pod = self._pod(request)
            if verb not in ALLOWED[pod.phase]:
                detail = f"cannot {verb} a pod that is {pod.phase}"
                return problem(409, "Conflict", detail)
            pod.logs.append(f"{verb} requested")
            if verb == "terminate":
                self._enter(pod, "TERMINATED")
                return web.Response(status=204)
            if verb == "stop":
                self._enter(pod, "EXITED")
            elif verb == "start":
                self._enter(pod, "PROVISIONING")
                pod.started = None
            else:
                self._enter(pod, "STARTING")
                pod.started = None
            return web.json_response(self.pod_json(pod))

        return await _answer(act)

    async def delete_pod(self, request: web.Request) -> web.Response:
        def delete() -> web.Response:
            self._enter(self._pod(request), "TERMINATED")
            return web.Response(status=204)

        return await _answer(delete)

    async def logs(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events kept open, as the spec's getPodLogs: `tail` lines (default 100,
        0 … 5000) backfilled, then each new line."""
        try:
            pod = self._pod(request)
            tail = _tail(request.query.get("tail", "100"))
        except _Problem as exc:
            return exc.response()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                "X-Accel-Buffering": "no",
                "RateLimit": RATE_LIMIT,
                "RateLimit-Policy": RATE_POLICY,
            }
        )
        await response.prepare(request)
        sent = max(0, len(pod.logs) - tail)
        while True:  # the backfill, then new lines as they come, until the client goes
            for number, line in enumerate(pod.logs[sent:], start=sent + 1):
                data = json.dumps({"ts": _now_iso(), "source": "container", "line": line})
                await response.write(f"id: {_now_iso()}/{number:012}\ndata: {data}\n\n".encode())
            sent = len(pod.logs)
            if request.transport is None or request.transport.is_closing():
                return response
            await asyncio.sleep(LOG_POLL_S)

    async def catalog(self, request: web.Request) -> web.Response:
        gpus = [
            {
                "id": gpu_id,
                "name": name,
                "pool": pool,
                "manufacturer": "NVIDIA",
                "memory": memory,
                "secure": True,
                "community": True,
                "price": {"secure": secure, "community": community},
                "maxCount": {"secure": most, "community": most},
            }
            for gpu_id, name, pool, memory, secure, community, most in CATALOG
        ]
        return web.json_response({"gpus": gpus})

    async def billing(self, request: web.Request) -> web.Response:
        wanted = request.query.get("podId")
        start = request.query.get("startTime") or _now_iso(time.time() - 86400)
        end = request.query.get("endTime") or _now_iso(time.time() + 1)
        records: list[dict[str, Any]] = []
        for pod in self.pods.values():
            self._advance(pod)
            if wanted and pod.id != wanted:
                continue
            amount = round(pod.billed_s / 3600 * pod.price * pod.gpu_count, 6)
            records.append(
                {
                    "startTime": start,
                    "endTime": end,
                    "podId": pod.id,
                    "totalAmount": amount,
                    "gpuAmount": amount,
                    "cpuAmount": 0.0,
                    "diskAmount": 0.0,
                }
            )
        total = round(sum(r["totalAmount"] for r in records), 6)
        metadata = {
            "query": {"startTime": start, "endTime": end, "bucketSize": "day"},
            "recordCount": len(records),
            "uniquePodCount": len(records),
            "totals": {
                "totalAmount": total,
                "gpuAmount": total,
                "cpuAmount": 0.0,
                "diskAmount": 0.0,
            },
        }
        if wanted:
            metadata["query"] = {
                "startTime": start,
                "endTime": end,
                "bucketSize": "day",
                "podId": wanted,
            }
        return web.json_response({"records": records, "metadata": metadata})

    def _new_id(self) -> str:
        if self.comfy_root is not None:
            return str(free_port())  # the loopback port of its proxy (see above)
        return "".join(random.choices(string.ascii_lowercase + string.digits, k=14))

    async def tick(self) -> None:
        """Phases move on by themselves (and backing ComfyUIs start) though nobody asks."""
        while True:
            await asyncio.sleep(0.1)
            for pod in self.pods.values():
                self._advance(pod)

    async def queue_failure(self, request: web.Request) -> web.Response:
        self.failures.append(str((await request.json())["fail"]))
        return web.json_response({"queued": self.failures})


class _Problem(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail

    def response(self) -> web.Response:
        return problem(self.status, self.title, self.detail)


def _tail(text: str) -> int:
    """The spec's LogTail: an integer 0 … 5000."""
    try:
        tail = int(text)
    except ValueError:
        tail = -1
    if not 0 <= tail <= 5000:
        raise _Problem(400, "Bad Request", "tail must be an integer from 0 to 5000")
    return tail


async def _answer(make: Any) -> web.Response:
    try:
        response: web.Response = make()
    except _Problem as exc:
        return exc.response()
    return response


def problem(status: int, title: str, detail: str, errors: list[str] | None = None) -> web.Response:
    """An RFC 9457 problem, as Runpod's API answers every error."""
    body: dict[str, Any] = {"title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/problem+json"
    )


KNOWN_FIELDS = {
    "name", "image", "templateId", "gpu", "cpu", "cloud", "ports", "env", "mounts", "args",
    "disk", "registry", "dataCenterIds", "globalNetworking", "startJupyter", "startSsh",
}  # fmt: skip


def _contract_errors(body: dict[str, Any]) -> list[str]:
    """What the spec's CreatePodRequest forbids (the API answers 422 for these)."""
    errors = [f"$: additional properties '{k}' not allowed" for k in body if k not in KNOWN_FIELDS]
    if not isinstance(body.get("name"), str) or not body.get("name"):
        errors.append("$: missing property 'name'")
    if "image" not in body and "templateId" not in body:
        errors.append("$: missing property 'image'")
    if ("gpu" in body) == ("cpu" in body):
        errors.append("$: exactly one of 'gpu' or 'cpu' must be set")
    elif "cpu" in body:
        errors.append("$.cpu: this simulator makes GPU pods only")
    elif not isinstance(body["gpu"], dict) or not isinstance(body["gpu"].get("id"), str):
        errors.append("$.gpu: missing property 'id'")
    if body.get("cloud", "SECURE") not in ("SECURE", "COMMUNITY"):
        errors.append("$.cloud: value must be one of 'SECURE', 'COMMUNITY'")
    return errors


class PodComfy:
    """A RUNNING pod's ComfyUI (a simulated one) behind a stand-in for Runpod's proxy."""

    def __init__(self, folder: Path, proxy_port: int) -> None:
        self.folder, self.proxy_port = folder, proxy_port
        self.instance: SimInstance | None = None
        self._runner: web.AppRunner | None = None

    async def open_proxy(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.proxy_port).start()

    def follow(self, pod: SimPod) -> None:
        if pod.phase == "RUNNING" and self.instance is None:
            memory = next((g[3] for g in CATALOG if g[0] == pod.gpu_id), 24)
            args = ["--sim-name", pod.name, "--sim-device", pod.gpu_id, "--sim-startup-s", "1"]
            args += ["--sim-vram-gb", str(memory)]
            self.instance = start_sim(
                self.folder, wait=False, args=["--listen", "127.0.0.1", *args]
            )
        elif pod.phase != "RUNNING" and self.instance is not None:
            self.instance.stop()
            self.instance = None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.instance is None:
            return _bad_gateway()
        target = f"http://127.0.0.1:{self.instance.port}{request.path_qs}"
        async with aiohttp.ClientSession() as session:
            try:
                if request.headers.get("Upgrade", "").lower() == "websocket":
                    return await self._websocket(request, session, target)
                async with session.request(
                    request.method, target, data=await request.read(), headers=_passed(request)
                ) as answer:
                    body = await answer.read()
                    headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP}
                    return web.Response(status=answer.status, body=body, headers=headers)
            except aiohttp.ClientConnectionError:
                return _bad_gateway()

    @staticmethod
    async def _websocket(
        request: web.Request, session: aiohttp.ClientSession, target: str
    ) -> web.StreamResponse:
        upstream = await session.ws_connect(target)
        socket = web.WebSocketResponse()
        await socket.prepare(request)

        async def down() -> None:
            async for message in upstream:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await socket.send_str(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await socket.send_bytes(message.data)
            await socket.close()

        pump = asyncio.ensure_future(down())
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                await upstream.send_str(message.data)
        pump.cancel()
        await upstream.close()
        return socket

    async def close(self) -> None:
        if self.instance is not None:
            self.instance.stop()
        if self._runner is not None:
            await self._runner.cleanup()


HOP = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding", "host"})


def _passed(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in HOP}


def _bad_gateway() -> web.Response:
    return web.Response(status=502, text="502 Bad Gateway", content_type="text/html")


async def serve(port: int, sim: RunpodSim) -> None:
    runner = web.AppRunner(sim.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(json.dumps({"port": port}), flush=True)
    ticking = asyncio.ensure_future(sim.tick())
    stop = asyncio.Event()
    for name in ("SIGTERM", "SIGINT"):  # the backing ComfyUIs go with it
        with contextlib.suppress(NotImplementedError, AttributeError):
            asyncio.get_running_loop().add_signal_handler(getattr(signal, name), stop.set)
    try:
        await stop.wait()
    finally:
        ticking.cancel()
        for backing in sim.backing.values():
            await backing.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.sim.runpod")
    parser.add_argument("--port", type=int, required=True)
    # (keys from the environment, as secrets are kept off command lines)
    parser.add_argument("--api-key", default=os.environ.get("COMFYFLEET_SIM_RUNPOD_KEY", "sim-key"))
    parser.add_argument(
        "--readonly-key", default=os.environ.get("COMFYFLEET_SIM_RUNPOD_READONLY_KEY", "sim-ro")
    )
    parser.add_argument("--provisioning-s", type=float, default=1.0)
    parser.add_argument("--starting-s", type=float, default=1.0)
    parser.add_argument("--fail", action="append", default=[], help="the next creates' failures")
    parser.add_argument("--comfy-root", type=Path, help="back running pods with simulated ComfyUIs")
    args = parser.parse_args(argv)
    sim = RunpodSim(
        args.api_key, args.readonly_key, args.provisioning_s, args.starting_s, args.fail,
        args.comfy_root,
    )  # fmt: skip
    asyncio.run(serve(args.port, sim))


if __name__ == "__main__":
    main()
