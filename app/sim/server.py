"""The simulated ComfyUI's aiohttp server: routes, /api prefix, CORS, websocket, faults."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

from app.sim.assets import Seeder
from app.sim.catalogue import build_catalogue
from app.sim.distributed import Distributed
from app.sim.engine import BASELINE_VRAM, Engine
from app.sim.events import EventHub
from app.sim.internal_logs import InternalLogs
from app.sim.jobs_api import JobsApi, canonical_uuid
from app.sim.settings import SimSettings
from app.sim.simlog import SimLog
from app.sim.validation import validate_prompt

COMFYUI_VERSION = "0.3.64"
COMFYUI_VERSION_038 = "0.38.1"  # what 0.38 says it is (recordings/comfyui-0.38)
INVALID_PROMPT_ID_038 = {  # recordings/comfyui-0.38/routes.json, POST /prompt
    "error": {
        "type": "invalid_prompt_id",
        "message": "prompt_id must be a valid UUID",
        "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form;"
        " omit it to let the server generate one",
        "extra_info": {},
    },
    "node_errors": {},
}
PACKAGE_VERSIONS_038 = [  # 0.38's requirements.txt packages named comfy*, as recorded
    {"name": name, "installed": version, "required": version}
    for name, version in (
        ("comfyui-frontend-package", "1.53.6"),
        ("comfyui-workflow-templates", "0.11.73"),
        ("comfyui-embedded-docs", "0.5.12"),
        ("comfy-kitchen", "0.2.36"),
        ("comfy-aimdo", "0.5.5"),
    )
]
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
MODEL_FOLDERS = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
]
PLAIN_500 = "500 Internal Server Error\n\nServer got itself in trouble"


class SimServer:
    def __init__(self, settings: SimSettings, log: SimLog) -> None:
        self.settings = settings
        self.log = log
        self.events = EventHub()
        self.catalogue = build_catalogue(settings.models, settings.distributed)
        self.engine = Engine(settings, self.catalogue, self.events, log)
        self.distributed = Distributed(self.engine) if settings.distributed else None
        self.engine.on_job_done = self._after_job
        self.internal_logs = InternalLogs(log, self.events)
        self.new = settings.comfyui_version == "0.38"
        self.jobs_api = JobsApi(self.engine) if self.new else None
        folders = {"input": settings.input, "output": settings.output, "temp": settings.temp}
        self.seeder = Seeder(self.events, folders, settings.time_scale) if settings.assets else None
        self._worker: asyncio.Task[None] | None = None

    def _after_job(self, done: int) -> None:
        if self.seeder:
            self.seeder.after_prompt()
        limit = self.settings.faults.crash_after
        if limit is not None and done >= limit:
            self.log.write(
                "!!! Exception during processing !!! CUDA error: an illegal memory "
                "access was encountered",
                "stderr",
            )
            os._exit(1)  # a hard crash: no cleanup, as a CUDA fault would

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults, self._cors], client_max_size=100 * 2**20)
        routes = self._routes() + (self.distributed.routes() if self.distributed else [])
        routes += self.jobs_api.routes() if self.jobs_api else []
        app.add_routes(routes)
        app.add_routes([web.route(r.method, "/api" + r.path, r.handler) for r in routes])
        app.add_routes(self.internal_logs.routes())  # (never under /api, as recorded)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self._worker = asyncio.create_task(self.engine.run_forever())

    async def _stop(self, app: web.Application) -> None:
        if self._worker:
            self._worker.cancel()
        await self.events.close_all()
        if self.seeder:
            self.seeder.cancel()
        if self.distributed:
            await self.distributed.close()

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        faults = self.settings.faults
        if faults.hang:
            await asyncio.Event().wait()  # accept the connection, never answer
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        if faults.http500 or (faults.flaky and random.random() < faults.flaky):
            return web.Response(status=500, text=PLAIN_500)
        try:
            response: web.StreamResponse = await handler(request)
        except json.JSONDecodeError:
            return web.Response(status=500, text=PLAIN_500)
        return response

    @web.middleware
    async def _cors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.settings.cors:
            response: web.StreamResponse = await handler(request)
            return response
        if request.method == "OPTIONS":
            response = web.Response()
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS, PATCH"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ws", self.websocket),
            web.get("/system_stats", self.system_stats),
            web.get("/prompt", self.get_prompt),
            web.post("/prompt", self.post_prompt),
            web.get("/queue", self.get_queue),
            web.post("/queue", self.post_queue),
            web.get("/history", self.get_history),
            web.get("/history/{prompt_id}", self.get_history_item),
            web.post("/history", self.post_history),
            web.get("/view", self.view),
            web.post("/interrupt", self.interrupt),
            web.post("/free", self.free),
            web.get("/object_info", self.object_info),
            web.get("/object_info/{node_class}", self.object_info_class),
            web.get("/models", self.models),
            web.get("/models/{folder}", self.models_folder),
            web.get("/features", self.features),
            web.get("/embeddings", self.embeddings),
            web.get("/extensions", self.extensions),
            web.post("/upload/image", self.upload_image),
        ]

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.events.add(sid, socket)
        try:
            await socket.send_json(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": self.engine.queue_remaining}},
                        "sid": sid,
                    },
                }
            )
            async for message in socket:
                if message.type.name == "TEXT" and '"feature_flags"' in message.data:
                    await socket.send_json({"type": "feature_flags", "data": FEATURES})
        finally:
            self.events.remove(sid)
        return socket

    async def system_stats(self, request: web.Request) -> web.Response:
        memory = psutil.virtual_memory()
        devices = [self._device(memory.total, memory.available)]
        if self.new and not self.settings.cpu:  # 0.38: every visible GPU, primary first
            pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
            count = len(pinned.split(",")) if pinned else self.settings.gpus
            devices += [self._other_gpu(index) for index in range(1, count)]
        return web.json_response({"system": self._system(memory), "devices": devices})

    def _system(self, memory: Any) -> dict[str, Any]:
        """0.3.64's as recorded; 0.38's as recordings/comfyui-0.38/system_stats.json gives it
        (sys.platform for os, two keys more, in its key order)."""
        new = self.new
        frontend, templates = ("1.53.6", "0.11.73") if new else ("1.27.10", "0.1.95")
        system: dict[str, Any] = {
            "os": sys.platform if new else os.name,
            "ram_total": memory.total,
            "ram_free": memory.available,
            "comfyui_version": COMFYUI_VERSION_038 if new else COMFYUI_VERSION,
            "required_frontend_version": frontend,
            "installed_templates_version": templates,
            "required_templates_version": templates,
        }
        if new:
            system["comfy_package_versions"] = PACKAGE_VERSIONS_038
        system.update(
            python_version=sys.version, pytorch_version="2.11.0+cu130", embedded_python=False
        )
        if new:
            system["deploy_environment"] = "local-git"
        system["argv"] = list(self.settings.argv)
        return system

    def _device(self, ram_total: int, ram_free: int) -> dict[str, Any]:
        if self.settings.cpu:
            return {
                "name": "cpu",
                "type": "cpu",
                "index": None,
                "vram_total": ram_total,
                "vram_free": ram_free,
                "torch_vram_total": ram_total,
                "torch_vram_free": ram_free,
            }
        total = self.settings.vram_total
        free = 0 if self.settings.faults.vram_full else max(0, total - self.engine.vram_used())
        name = self.settings.device_name  # (pinned or not: the recorded pinned H200 says its name)
        torch_total = sum(self.engine.loaded_models.values()) + self.engine.working_vram
        return {
            "name": f"cuda:0 {name} : cudaMallocAsync",
            "type": "cuda",
            "index": 0,
            "vram_total": total,
            "vram_free": free,
            "torch_vram_total": torch_total,
            "torch_vram_free": max(0, torch_total - self.engine.working_vram),
        }

    def _other_gpu(self, index: int) -> dict[str, Any]:
        """A visible GPU ComfyUI does not compute on: only its baseline used."""
        total = self.settings.vram_total
        return {
            "name": f"cuda:{index} {self.settings.device_name} : cudaMallocAsync",
            "type": "cuda",
            "index": index,
            "vram_total": total,
            "vram_free": total - BASELINE_VRAM,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        }

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": self.engine.queue_remaining}})

    async def post_prompt(self, request: web.Request) -> web.Response:
        data = await request.json()
        if "prompt" not in data:
            return web.json_response(
                {
                    "error": {
                        "type": "no_prompt",
                        "message": "No prompt provided",
                        "details": "No prompt provided",
                        "extra_info": {},
                    },
                    "node_errors": {},
                },
                status=400,
            )
        chosen = data.get("prompt_id")
        if self.new and chosen is not None and not canonical_uuid(chosen):
            return web.json_response(INVALID_PROMPT_ID_038, status=400)
        result = validate_prompt(data["prompt"], self.catalogue, self.settings.comfyui_version)
        if not result.ok:
            return web.json_response(
                {"error": result.error, "node_errors": result.node_errors}, status=400
            )
        extra = dict(data.get("extra_data") or {})
        # a prompt_id the client chose is kept (server.py: json_data.get("prompt_id", uuid4()))
        item = await self.engine.submit(
            data["prompt"],
            data.get("client_id"),
            result.outputs,
            extra,
            None if chosen is None else str(chosen),
        )
        return web.json_response(
            {"prompt_id": item.prompt_id, "number": item.number, "node_errors": {}}
        )

    async def get_queue(self, request: web.Request) -> web.Response:
        running = [self.engine.running.as_list()] if self.engine.running else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [i.as_list() for i in self.engine.pending]}
        )

    async def post_queue(self, request: web.Request) -> web.Response:
        data = await request.json()
        if data.get("clear"):
            self.engine.clear_pending()
        if "delete" in data:
            self.engine.delete_pending([str(i) for i in data["delete"]])
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        items = list(self.engine.history.items())
        if "max_items" in request.query:
            items = items[-int(request.query["max_items"]) :]
        return web.json_response(dict(items))

    async def get_history_item(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.engine.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def post_history(self, request: web.Request) -> web.Response:
        data = await request.json()
        if data.get("clear"):
            self.engine.history.clear()
        for prompt_id in data.get("delete", []):
            self.engine.history.pop(str(prompt_id), None)
        return web.Response(status=200)

    def _folder(self, kind: str) -> Path | None:
        return {
            "output": self.settings.output,
            "temp": self.settings.temp,
            "input": self.settings.input,
        }.get(kind)

    async def view(self, request: web.Request) -> web.StreamResponse:
        folder = self._folder(request.query.get("type", "output"))
        filename = request.query.get("filename", "")
        if folder is None or not filename:
            return web.Response(status=400)
        base = folder.resolve()
        path = (base / request.query.get("subfolder", "") / filename).resolve()
        if not path.is_relative_to(base):
            return web.Response(status=403)
        if not path.is_file():
            return web.Response(status=404)
        return web.FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})

    async def interrupt(self, request: web.Request) -> web.Response:
        data = await request.json() if request.can_read_body else {}
        self.engine.interrupt(data.get("prompt_id") if isinstance(data, dict) else None)
        return web.Response(status=200)

    async def free(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.engine.free(bool(data.get("unload_models")))
        return web.Response(status=200)

    async def object_info(self, request: web.Request) -> web.Response:
        if self.seeder:
            self.seeder.on_object_info()
        return web.json_response(self.catalogue)

    async def object_info_class(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: self.catalogue[name]} if name in self.catalogue else {})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(MODEL_FOLDERS)

    async def models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response(self.settings.models.get(folder, []))

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response(FEATURES)

    async def embeddings(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def extensions(self, request: web.Request) -> web.Response:
        scripts = ["main.js", "apiClient.js", "ui.js"] if self.distributed else []
        return web.json_response([f"/extensions/ComfyUI-Distributed/{s}" for s in scripts])

    async def upload_image(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("image")
        if not isinstance(upload, web.FileField):
            return web.Response(status=400)
        kind = str(form.get("type") or "input")
        folder = self._folder(kind) or self.settings.input
        subfolder = str(form.get("subfolder") or "")
        target_dir = (folder / subfolder).resolve()
        if not target_dir.is_relative_to(folder.resolve()):
            return web.Response(status=400)
        target_dir.mkdir(parents=True, exist_ok=True)
        name = Path(upload.filename).name
        overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
        stem, suffix, counter = Path(name).stem, Path(name).suffix, 1
        while (target_dir / name).exists() and not overwrite:
            name = f"{stem} ({counter}){suffix}"
            counter += 1
        (target_dir / name).write_bytes(upload.file.read())
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})
