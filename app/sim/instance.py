"""One simulated ComfyUI instance: its start-up log, its start-up faults, then its server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from typing import IO

from aiohttp import web

from app.sim.assets import startup_failure
from app.sim.server import COMFYUI_VERSION, COMFYUI_VERSION_038, SimServer
from app.sim.settings import SimSettings
from app.sim.simlog import SimLog

START_FAILURES = {
    "cuda-oom": [
        "Traceback (most recent call last):",
        '  File "/opt/ComfyUI/main.py", line 147, in <module>',
        "    import comfy.model_management",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a "
        "total capacity of 23.64 GiB of which 3.12 MiB is free. Process 4312 has 23.63 GiB "
        "memory in use.",
    ],
    "module-missing": [
        "Traceback (most recent call last):",
        '  File "/opt/ComfyUI/main.py", line 147, in <module>',
        "    import execution",
        "ModuleNotFoundError: No module named 'torchsde'",
    ],
    "custom-node": [
        "Traceback (most recent call last):",
        '  File "/opt/ComfyUI/nodes.py", line 2133, in load_custom_node',
        "ImportError: cannot import name 'broken' from 'ComfyUI-Broken'",
        "Cannot import /opt/ComfyUI/custom_nodes/ComfyUI-Broken module for custom nodes: "
        "cannot import name 'broken'",
        "   0.0 seconds (IMPORT FAILED): /opt/ComfyUI/custom_nodes/ComfyUI-Broken",
        "Segmentation fault (core dumped)",
    ],
    "cuda-driver": [
        "Traceback (most recent call last):",
        '  File "/opt/ComfyUI/comfy/model_management.py", line 231, in get_torch_device',
        "RuntimeError: CUDA driver initialization failed, you might not have a CUDA gpu. "
        "(CUDA error: no CUDA-capable device is detected)",
    ],
}


ENV_SHOWN = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "PYTORCH_CUDA_ALLOC_CONF",
    "COMFYUI_IS_WORKER",
)


def _bind_error(settings: SimSettings) -> list[str]:
    if settings.comfyui_version == "0.38":  # one ERROR line, no traceback (launch_errors.json)
        return [
            f"Port {settings.port} is already in use on address {settings.listen}. Please close "
            "the other application or use a different port with --port."
        ]
    return [
        f"OSError: [Errno 98] error while attempting to bind on address "
        f"('{settings.listen}', {settings.port}): address already in use"
    ]


def _startup_lines(settings: SimSettings) -> list[str]:
    new = settings.comfyui_version == "0.38"
    device = "cpu" if settings.cpu else f"cuda:0 {settings.device_name} : cudaMallocAsync"
    lines = [
        f"Setting output directory to: {settings.output}",
        f"Setting input directory to: {settings.input}",
        f"Setting user directory to: {settings.user}",
        f"Total VRAM {settings.vram_total // 2**20} MB",
        f"Device: {device}",
        f"ComfyUI version: {COMFYUI_VERSION_038 if new else COMFYUI_VERSION}",
        f"Setting temp directory to: {settings.temp}",
        "",
        "Import times for custom nodes:",
    ]
    seen = {k: os.environ[k] for k in ENV_SHOWN if k in os.environ}
    lines.insert(0, "Simulated ComfyUI environment: " + json.dumps(seen, sort_keys=True))
    if settings.distributed:
        lines.append(f"   0.0 seconds: {settings.base_dir}/custom_nodes/ComfyUI-Distributed")
    return lines


def _start_failure(settings: SimSettings) -> tuple[list[str], IO[str] | None]:
    """What ends the start-up before the server (a fault, 0.38's asset database), or, when it
    goes on, the database's lock to hold."""
    fault = settings.faults.start_fail
    if fault:
        return (_bind_error(settings) if fault == "port-in-use" else START_FAILURES[fault]), None
    if settings.assets:
        return startup_failure(settings.database_url, settings.user)
    return [], None


async def serve(settings: SimSettings, log: SimLog) -> int:
    for line in _startup_lines(settings):
        log.write(line)
    if not settings.faults.start_fail:
        await asyncio.sleep(settings.startup_s)  # a real one takes 9-18 s; enough to be seen
    failure, database_lock = _start_failure(settings)
    for line in failure:
        log.write(line, "stderr")
    if failure:
        return 1
    for folder in (settings.output, settings.temp, settings.input, settings.user):
        folder.mkdir(parents=True, exist_ok=True)
    runner = web.AppRunner(
        SimServer(settings, log).app(), handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.listen, settings.port)
    try:
        await site.start()
    except OSError:
        for line in _bind_error(settings):
            log.write(line, "stderr")
        await runner.cleanup()
        return 1
    shown = "127.0.0.1" if settings.listen in ("0.0.0.0", "::") else settings.listen
    log.write("Starting server\n")  # two entries, as recorded: "Starting server\n\n", then …
    log.write(f"To see the GUI go to: http://{shown}:{settings.port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if settings.faults.die_after_s is not None:
        kill = getattr(signal, "SIGKILL", signal.SIGTERM)  # (Windows has no SIGKILL)
        loop.call_later(settings.faults.die_after_s, os.kill, os.getpid(), kill)
    for name in ("SIGTERM", "SIGINT"):
        # On Windows there are no loop signal handlers: Ctrl-C arrives as KeyboardInterrupt.
        if hasattr(signal, name):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(getattr(signal, name), stop.set)
    await stop.wait()
    log.write("Stopped server")
    await runner.cleanup()
    if database_lock is not None:
        database_lock.close()
    return 0
