"""ComfyUI-Distributed 1.4.4 as the simulator speaks it: config routes, queue, seeds, collector."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import platform
import secrets
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from app.sim import images
from app.sim.engine import Engine, RunningNode
from app.sim.nodes import NodeFailure, NodeResult
from app.sim.validation import distributed_error_text, validate_prompt

DEFAULT_SETTINGS = {
    "debug": False,
    "auto_launch_workers": False,
    "stop_workers_on_master_exit": True,
    "master_delegate_only": False,
    "websocket_orchestration": True,
    "worker_probe_concurrency": 8,
    "worker_prep_concurrency": 4,
    "media_sync_concurrency": 2,
    "media_sync_timeout_seconds": 120,
}
DEFAULT_TUNNEL = {
    "status": "stopped",
    "public_url": "",
    "pid": None,
    "log_file": "",
    "previous_master_host": "",
}
COLLECTOR_TIMEOUT_S = 60.0  # the extension waits this long after the last item
HTTPS_SUFFIXES = (".trycloudflare.com", ".proxy.runpod.net")
WORKER_KEYS = ("name", "host", "port", "cuda_device", "enabled", "extra_args", "type")
COLLECTORS = ("DistributedCollector", "UltimateSDUpscaleDistributed")


def _load_balance(prompt: dict[str, Any]) -> bool:
    """A DistributedCollector asks for it (its input as a bool, a number or "true"/"yes"/…)."""
    for node in prompt.values():
        if node.get("class_type") == "DistributedCollector":
            value = node.get("inputs", {}).get("load_balance", False)
            if isinstance(value, str):
                value = value.strip().lower() in {"1", "true", "yes", "on"}
            if value is True or (isinstance(value, int | float) and bool(value)):
                return True
    return False


def worker_url(worker: dict[str, Any]) -> str:
    host, port = worker.get("host") or "127.0.0.1", int(worker.get("port") or 8188)
    if (
        worker.get("type") == "cloud"
        or port == 443
        or host.endswith(HTTPS_SUFFIXES)
        or ".ngrok" in host
    ):
        return f"https://{host}"
    return f"http://{host}:{port}"


class DistributedConfig:
    """gpu_config.json, written atomically as the extension does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {
                "master": {"host": ""},
                "workers": [],
                "settings": dict(DEFAULT_SETTINGS),
                "tunnel": dict(DEFAULT_TUNNEL),
            }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.data, handle, indent=2)
        os.replace(tmp, self.path)

    def worker(self, worker_id: str) -> dict[str, Any] | None:
        return next((w for w in self.data["workers"] if str(w.get("id")) == worker_id), None)


class Collector:
    """The master's side of one distributed run: images arriving from each worker."""

    def __init__(self, expected: list[str]) -> None:
        self.expected = expected
        self.images: dict[str, list[tuple[int, images.Image]]] = {w: [] for w in expected}
        self.finished: set[str] = set()
        self.changed = asyncio.Event()


class Distributed:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = DistributedConfig(engine.settings.distributed_config)
        self.collectors: dict[str, Collector] = {}
        self.machine_id = str(secrets.randbelow(10**14))
        self._session: aiohttp.ClientSession | None = None
        self._round_robin = 0  # load_balance's turn among idle candidates
        engine.extension_nodes["DistributedSeed"] = self._seed_node
        engine.extension_nodes["DistributedCollector"] = self._collector_node

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/distributed/config", self.get_config),
            web.post("/distributed/config/update_worker", self.update_worker),
            web.post("/distributed/config/delete_worker", self.delete_worker),
            web.post("/distributed/config/update_master", self.update_master),
            web.post("/distributed/config/update_setting", self.update_setting),
            web.get("/distributed/system_info", self.system_info),
            web.get("/distributed/network_info", self.network_info),
            web.post("/distributed/queue", self.queue),
            web.post("/distributed/job_complete", self.job_complete),
            web.post("/distributed/clear_memory", self.clear_memory),
            web.get("/distributed/local_log", self.local_log),
        ]

    async def get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.data)

    async def update_worker(self, request: web.Request) -> web.Response:
        data = await request.json()
        worker_id = str(data.get("worker_id", ""))
        worker = self.config.worker(worker_id)
        if worker is None:
            if not all(k in data for k in ("name", "port", "cuda_device")):
                return web.json_response(
                    {"status": "error", "message": f"Worker {worker_id} not found"}, status=404
                )
            worker = {"id": worker_id}
            for key in WORKER_KEYS:  # created as given, nulls included, in the extension's order
                if key in data or key in ("enabled", "extra_args"):
                    worker[key] = data.get(key, {"enabled": True, "extra_args": ""}.get(key))
            self.config.data["workers"].append(worker)
        else:
            for key in WORKER_KEYS:
                if key not in data:
                    continue
                if data[key] is None and key in ("host", "cuda_device", "extra_args"):
                    worker.pop(key, None)
                else:
                    worker[key] = data[key]
        self.config.save()
        return web.json_response({"status": "success"})

    async def delete_worker(self, request: web.Request) -> web.Response:
        worker_id = str((await request.json()).get("worker_id", ""))
        worker = self.config.worker(worker_id)
        if worker is None:
            return web.json_response(
                {"status": "error", "message": f"Worker {worker_id} not found"}, status=404
            )
        self.config.data["workers"].remove(worker)
        self.config.save()
        return web.json_response({"status": "success"})

    async def update_master(self, request: web.Request) -> web.Response:
        data = await request.json()
        master = self.config.data.setdefault("master", {})
        for key in ("host", "port", "cuda_device", "name", "extra_args"):
            if key in data:
                master[key] = data[key]
        self.config.save()
        return web.json_response({"status": "success"})

    async def update_setting(self, request: web.Request) -> web.Response:
        data = await request.json()
        if "key" not in data:
            return web.json_response({"status": "error", "message": "key required"}, status=400)
        self.config.data.setdefault("settings", {})[data["key"]] = data.get("value")
        self.config.save()
        return web.json_response({"status": "success"})

    async def system_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "success",
                "hostname": socket.gethostname(),
                "machine_id": self.machine_id,
                "platform": {
                    "system": platform.system(),
                    "machine": platform.machine(),
                    "node": platform.node(),
                    "path_separator": os.sep,
                    "os_name": os.name,
                },
                "is_docker": Path("/.dockerenv").exists(),
                "is_runpod": "RUNPOD_POD_ID" in os.environ,
                "runpod_pod_id": os.environ.get("RUNPOD_POD_ID"),
            }
        )

    async def network_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "success",
                "hostname": socket.gethostname(),
                "all_ips": ["127.0.0.1"],
                "recommended_ip": "127.0.0.1",
                "cuda_device": 0,
                "cuda_device_count": 1,
                "message": "Auto-detected network configuration",
            }
        )

    async def clear_memory(self, request: web.Request) -> web.Response:
        self.engine.free(unload_models=True)
        return web.json_response({"status": "success", "message": "GPU memory cleared."})

    async def local_log(self, request: web.Request) -> web.Response:
        wanted = int(request.query.get("lines", "300"))
        kept = list(self.engine.log.lines)
        content = "\n".join(kept[-wanted:])
        return web.json_response(
            {
                "status": "success",
                "content": content,
                "entries": len(kept),
                "source": "memory",
                "truncated": len(kept) > wanted,
                "lines_shown": content.count("\n") + 1,
            }
        )

    async def queue(self, request: web.Request) -> web.Response:
        data = await request.json()
        for key in ("prompt", "client_id", "enabled_worker_ids"):
            if key not in data:
                return web.json_response({"error": f"{key} required"}, status=400)
        prompt = data["prompt"]
        result = validate_prompt(
            prompt, self.engine.catalogue, self.engine.settings.comfyui_version
        )
        if not result.ok:
            return web.json_response({"error": distributed_error_text(result)}, status=500)
        enabled = [str(i) for i in data["enabled_worker_ids"]]
        workers = [w for i in enabled if (w := self.config.worker(i)) and w.get("enabled", True)]
        online = await self._probe(workers)
        for worker in workers:
            if worker not in online:
                self.engine.log.write(
                    f"[Distributed] Worker {worker.get('name')} is offline, skipping"
                )
        has_collector = any(n.get("class_type") in COLLECTORS for n in prompt.values())
        participants = online if has_collector else []
        delegate = bool(data.get("delegate_master"))
        if has_collector and _load_balance(prompt):
            participants, delegate = await self._least_busy(online, delegate)
            enabled = [str(w["id"]) for w in participants]
        job_id = f"exec_{int(time.time() * 1000)}_{secrets.token_hex(3)}"
        try:
            await self._dispatch(prompt, data["client_id"], participants, job_id, enabled)
        except aiohttp.ClientResponseError as exc:  # the master's own part is not queued
            return web.json_response({"error": str(exc)}, status=500)
        master_prompt = self._prepare(prompt, job_id, enabled, None, None, delegate)
        item = await self.engine.submit(master_prompt, data["client_id"], result.outputs)
        return web.json_response(
            {
                "prompt_id": item.prompt_id,
                "number": item.number,
                "node_errors": {},
                "worker_count": len(participants),
                "auto_prepare_supported": True,
            }
        )

    async def _least_busy(
        self, online: list[dict[str, Any]], delegate: bool
    ) -> tuple[list[dict[str, Any]], bool]:
        """load_balance (queue_orchestration.py, dispatch.py select_least_busy_worker): one
        candidate runs the whole job, the idle ones in turn, else the one with the shortest
        queue; the master is a candidate unless delegate-only. A worker chosen makes the master
        delegate-only; the master chosen runs it alone."""
        candidates: list[dict[str, Any] | None] = [*online, *([] if delegate else [None])]
        queues = await asyncio.gather(*(self._queue_remaining(c) for c in candidates))
        statuses = [(c, q) for c, q in zip(candidates, queues, strict=True) if q is not None]
        if not statuses:
            return [], False
        idle = [status for status in statuses if status[1] == 0]
        if idle:
            chosen = idle[self._round_robin % len(idle)][0]
            self._round_robin += 1
        else:
            chosen = min(statuses, key=lambda status: status[1])[0]
        return ([], False) if chosen is None else ([chosen], True)

    async def _queue_remaining(self, worker: dict[str, Any] | None) -> int | None:
        if worker is None:
            return self.engine.queue_remaining
        session = await self.session()
        try:
            async with session.get(
                f"{worker_url(worker)}/prompt", timeout=aiohttp.ClientTimeout(total=3)
            ) as response:
                answer = await response.json()
            return int(answer["exec_info"]["queue_remaining"])
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError):
            return None

    async def _probe(self, workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        session = await self.session()

        async def alive(worker: dict[str, Any]) -> bool:
            try:
                async with session.get(
                    f"{worker_url(worker)}/prompt", timeout=aiohttp.ClientTimeout(total=3)
                ) as response:
                    return response.status == 200
            except (TimeoutError, aiohttp.ClientError):
                return False

        answers = await asyncio.gather(*(alive(w) for w in workers))
        return [w for w, ok in zip(workers, answers, strict=True) if ok]

    async def _dispatch(
        self,
        prompt: dict[str, Any],
        client_id: str,
        participants: list[dict[str, Any]],
        job_id: str,
        enabled: list[str],
    ) -> None:
        collector_ids = [n for n, node in prompt.items() if node.get("class_type") in COLLECTORS]
        for node_id in collector_ids:
            self.collectors[f"{job_id}_{node_id}"] = Collector([str(w["id"]) for w in participants])
        session = await self.session()

        async def send(index: int, worker: dict[str, Any]) -> None:
            part = self._prepare(prompt, job_id, enabled, worker, index, False)
            async with session.post(
                f"{worker_url(worker)}/prompt", json={"prompt": part, "client_id": client_id}
            ) as response:
                response.raise_for_status()  # as the extension's dispatch does

        # All at once, as the extension gathers them: one refusal fails the queue request,
        # and the parts the other workers took stay queued there.
        await asyncio.gather(*(send(i, w) for i, w in enumerate(participants)))

    def _master_url(self, worker: dict[str, Any]) -> str:
        port = self.engine.settings.port
        host = str(self.config.data.get("master", {}).get("host") or "")
        if worker.get("type", "local") == "local" or not host:
            return f"http://127.0.0.1:{port}"
        if host.startswith(("http://", "https://")):
            return host.rstrip("/")
        return worker_url({"host": host, "port": port})

    def _prepare(
        self,
        prompt: dict[str, Any],
        job_id: str,
        enabled: list[str],
        worker: dict[str, Any] | None,
        index: int | None,
        delegate: bool,
    ) -> dict[str, Any]:
        part = copy.deepcopy(prompt)
        for node_id, node in list(part.items()):
            inputs = node.setdefault("inputs", {})
            if node.get("class_type") == "DistributedSeed":
                inputs.update(
                    is_worker=worker is not None,
                    worker_id="" if worker is None else f"worker_{index}",
                )
            elif node.get("class_type") in COLLECTORS:
                inputs.update(
                    multi_job_id=f"{job_id}_{node_id}",
                    is_worker=worker is not None,
                    enabled_worker_ids=json.dumps(enabled),
                    delegate_only=delegate,
                )
                if worker is not None:
                    inputs.update(master_url=self._master_url(worker), worker_id=str(worker["id"]))
        if worker is not None:
            self._prune_after_collectors(part)
        return part

    @staticmethod
    def _prune_after_collectors(part: dict[str, Any]) -> None:
        """Workers stop at the collector: its consumers go, a PreviewImage is added."""
        collectors = [n for n, node in part.items() if node.get("class_type") in COLLECTORS]
        downstream = {
            n
            for n, node in part.items()
            if any(
                isinstance(v, list) and v and v[0] in collectors
                for v in node.get("inputs", {}).values()
            )
        }
        for node_id in downstream:
            del part[node_id]
        next_id = max((int(n) for n in part if n.isdigit()), default=0) + 1
        for offset, collector in enumerate(collectors):
            part[str(next_id + offset)] = {
                "inputs": {"images": [collector, 0]},
                "class_type": "PreviewImage",
                "_meta": {"title": "Preview Image (auto-added)"},
            }

    async def job_complete(self, request: web.Request) -> web.Response:
        data = await request.json()
        job_id, worker_id = str(data.get("job_id", "")), str(data.get("worker_id", ""))
        collector = self.collectors.get(job_id)
        if collector is None:
            return web.json_response({"status": "error", "message": "unknown job"}, status=404)
        encoded = str(data.get("image", "")).split(",", 1)[-1]
        image = images.decode_png(base64.b64decode(encoded))
        collector.images.setdefault(worker_id, []).append((int(data.get("batch_idx", 0)), image))
        if data.get("is_last"):
            collector.finished.add(worker_id)
        collector.changed.set()
        return web.json_response({"status": "success"})

    async def _seed_node(self, ctx: RunningNode, inputs: dict[str, Any]) -> NodeResult:
        seed = int(inputs["seed"])
        if inputs.get("is_worker"):
            seed += int(str(inputs.get("worker_id", "worker_0")).rsplit("_", 1)[-1]) + 1
        return NodeResult((seed,))

    async def _collector_node(self, ctx: RunningNode, inputs: dict[str, Any]) -> NodeResult:
        batch: list[images.Image] = inputs["images"]
        if inputs.get("is_worker"):
            if not self.engine.settings.faults.no_callback:
                await self._send_back(inputs, batch)
            return NodeResult((batch, None))
        job_id = str(inputs.get("multi_job_id", ""))
        collector = self.collectors.get(job_id)
        own = [] if inputs.get("delegate_only") else list(batch)
        if collector is None:
            return NodeResult((own, None))
        try:
            await self._wait(collector)
        finally:
            del self.collectors[job_id]
        await ctx.progress(1, 1)
        gathered = [
            img
            for w in collector.expected
            for _, img in sorted(collector.images.get(w, []), key=lambda p: p[0])
        ]
        return NodeResult((own + gathered, None))

    async def _wait(self, collector: Collector) -> None:
        timeout = float(
            self.config.data.get("settings", {}).get("worker_timeout_seconds", COLLECTOR_TIMEOUT_S)
        )
        while not collector.finished.issuperset(collector.expected):
            collector.changed.clear()
            try:
                await asyncio.wait_for(collector.changed.wait(), timeout)
            except TimeoutError:
                missing = sorted(set(collector.expected) - collector.finished)
                self.engine.log.write(
                    f"[Distributed] Timed out waiting for workers {missing}; going on without them"
                )
                return

    async def _send_back(self, inputs: dict[str, Any], batch: list[images.Image]) -> None:
        session = await self.session()
        url = f"{inputs['master_url']}/distributed/job_complete"
        for index, image in enumerate(batch):
            png = await asyncio.to_thread(images.encode_png, image)
            payload = {
                "job_id": inputs["multi_job_id"],
                "worker_id": inputs.get("worker_id", ""),
                "batch_idx": index,
                "is_last": index == len(batch) - 1,
                "image": "data:image/png;base64," + base64.b64encode(png).decode(),
            }
            try:
                async with session.post(url, json=payload) as response:
                    response.raise_for_status()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise NodeFailure(
                    "RuntimeError", f"Failed to send results to master {url}: {exc}"
                ) from exc
