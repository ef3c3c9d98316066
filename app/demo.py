"""`comfy-fleet demo`: a simulated fleet on loopback ports, with a temp config.

The master and the local workers run from a simulated ComfyUI install that the app itself
launches, watches and restarts (one of them is killed now and then, to show crash recovery);
the remote workers are simulated instances the demo starts, as other machines would be.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.core.cloud import CloudSettings, PodRecipe
from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.queue import JobSpec
from app.core.workflow import Workflow
from app.services.paths import AppPaths
from app.services.queue_service import FleetQueue, QueuePaths
from app.services.runpod import API_KEY
from app.services.secrets import MemoryKeyring, SecretStore
from app.services.storage import ConfigStore
from app.sim.fleet import (
    REPO_ROOT,
    SimInstance,
    create_sim_install,
    free_port,
    runpod_command,
    start_sim,
)
from app.sim.nvml import SimGpu, SimNvml

log = logging.getLogger(__name__)
CRASH_EVERY_S = 150  # now and then, and never a crash loop (5 exits in 10 minutes)


@dataclass(frozen=True)
class DemoWorker:
    name: str
    device: str
    vram_gb: int
    local: bool = False
    time_scale: float = 1.0
    faults: str = ""
    comfyui_version: str = "0.3.64"  # the local ones share the install's
    power_limit_w: int = 450  # (a local one's simulated GPU)

    @property
    def gpu_uuid(self) -> str:
        """A local one's simulated GPU, by UUID as NVML says it (the same in every demo)."""
        return f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, f'comfy-fleet-demo/{self.name}')}"


# A mixed fleet: two GPUs of this machine (one crashes now and then) on ComfyUI 0.3.64, a slower
# LAN box and a flaky cloud pod on today's 0.38.
DEMO_WORKERS = (
    DemoWorker("gpu1-4090", "NVIDIA GeForce RTX 4090", 24, local=True),
    DemoWorker(
        "lan-3090 (slow)", "NVIDIA GeForce RTX 3090", 24, time_scale=3.0, comfyui_version="0.38"
    ),
    DemoWorker(
        "pod-a100 (flaky)", "NVIDIA A100-SXM4-80GB", 80, faults="flaky=0.1", comfyui_version="0.38"
    ),
    DemoWorker(
        "gpu2-4080 (crashes)",
        "NVIDIA GeForce RTX 4080",
        16,
        local=True,
        faults=f"die-after={CRASH_EVERY_S}",
        power_limit_w=320,
    ),
)
MASTER = DemoWorker("master", "NVIDIA GeForce RTX 4090", 24, local=True)
DEMO_JOB_IMAGES = 240  # a few minutes of the whole fleet


def demo_workflow() -> Workflow:
    """SDXL text to image, 1024×1024, 20 steps (the simulator's checkpoint; a few seconds an
    image on the fast cards, three times that on the slow one)."""
    return {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a lighthouse at dawn, film photo", "clip": ["4", 1]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, text", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1000,
                "steps": 20,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "demo", "images": ["8", 0]}},
    }


@dataclass
class DemoFleet:
    folder: tempfile.TemporaryDirectory[str]
    instances: list[SimInstance]  # the remote ones; the app stops the local ones it launched
    runpod: subprocess.Popen[str] | None = None  # a simulated Runpod (its pods' ComfyUIs too)
    runpod_key: str = field(default_factory=lambda: f"demo-{secrets.token_hex(8)}")
    nvml: SimNvml = field(default_factory=lambda: SimNvml([]))  # the local ones' GPUs

    def stop(self) -> None:
        for instance in self.instances:
            instance.stop()
        if self.runpod is not None and self.runpod.poll() is None:
            self.runpod.terminate()  # it stops its pods' ComfyUIs
            try:
                self.runpod.wait(15)
            except subprocess.TimeoutExpired:
                self.runpod.kill()
        self.folder.cleanup()

    def secrets(self) -> SecretStore:
        """The demo's Runpod key, kept in memory only (the user's keyring is not touched)."""
        store = SecretStore(backend=MemoryKeyring())
        store.set(API_KEY, self.runpod_key)
        return store


def _start_runpod(root: Path, fleet: DemoFleet) -> CloudSettings:
    """A simulated Runpod with one pod renting: it joins the fleet once it runs."""
    port = free_port()
    fleet.runpod = subprocess.Popen(
        [*runpod_command(), "--port", str(port), "--comfy-root",
         str(root / "pods"), "--provisioning-s", "3", "--starting-s", "4"],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
             "COMFYFLEET_SIM_RUNPOD_KEY": fleet.runpod_key},
    )  # fmt: skip
    assert fleet.runpod.stdout is not None
    json.loads(fleet.runpod.stdout.readline())
    url = f"http://127.0.0.1:{port}"
    recipe = PodRecipe(gpu_type="NVIDIA H200")
    request = urllib.request.Request(
        f"{url}/v2/pods",
        data=json.dumps(recipe.body("demo-pod-h200")).encode(),
        headers={"Authorization": f"Bearer {fleet.runpod_key}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).read()
    return CloudSettings(
        runpod_api_url=url, runpod_proxy="http://127.0.0.1:{pod}", recipe=recipe, poll_s=3
    )


def _args(spec: DemoWorker) -> list[str]:
    return [
        "--sim-name",
        spec.name,
        "--sim-device",
        spec.device,
        "--sim-vram-gb",
        str(spec.vram_gb),
        "--sim-time-scale",
        str(spec.time_scale),
        "--sim-startup-s",
        "0",
        "--sim-comfyui-version",
        spec.comfyui_version,
    ]


def demo_workers(count: int) -> list[DemoWorker]:
    """`count` workers from the mixed set, round after round; later rounds numbered: names
    must be unique."""
    chosen = []
    for number in range(max(0, count)):
        spec = DEMO_WORKERS[number % len(DEMO_WORKERS)]
        round_ = number // len(DEMO_WORKERS) + 1
        chosen.append(replace(spec, name=f"{spec.name} #{round_}") if round_ > 1 else spec)
    return chosen


def start_demo_fleet(
    count: int = len(DEMO_WORKERS), theme: str = "system"
) -> tuple[AppPaths, DemoFleet]:
    """Start the remote part of the simulated fleet and write a config for all of it (in the
    user's theme); the caller stops it."""
    folder = tempfile.TemporaryDirectory(prefix="comfy-fleet-demo-")
    fleet = DemoFleet(folder, [])
    try:
        return _start(Path(folder.name), fleet, demo_workers(count), theme), fleet
    except BaseException:  # nothing left running behind a failed start
        fleet.stop()
        raise


def _start(root: Path, fleet: DemoFleet, chosen: list[DemoWorker], theme: str) -> AppPaths:
    remote = [spec for spec in chosen if not spec.local]
    for number, spec in enumerate(remote):
        env = {"COMFYFLEET_SIM_FAULTS": spec.faults} if spec.faults else None
        fleet.instances.append(
            start_sim(root / f"remote{number}", wait=False, env=env, args=_args(spec))
        )
    for instance in fleet.instances:
        instance.wait_ready()
    ports = {spec.name: free_port() for spec in (MASTER, *chosen) if spec.local}
    install = _install(root / "ComfyUI", [MASTER, *chosen], ports)
    sims = iter(fleet.instances)
    local = [spec for spec in (MASTER, *chosen) if spec.local]
    fleet.nvml = SimNvml(
        [
            SimGpu(s.device, s.gpu_uuid, s.vram_gb * 2**30, s.power_limit_w, ports[s.name])
            for s in local
        ]
    )
    workers = tuple(
        WorkerConfig(spec.name, WorkerKind.LOCAL, port=ports[spec.name], gpu=spec.gpu_uuid)
        if spec.local
        else WorkerConfig(spec.name, WorkerKind.REMOTE, host="127.0.0.1", port=next(sims).port)
        for spec in chosen
    )
    paths = demo_paths(root)
    config = FleetConfig(
        master=MasterConfig(comfyui_dir=str(install), port=ports[MASTER.name], gpu=MASTER.gpu_uuid),
        workers=workers,
        app=AppSettings(start_fleet_on_launch=True, theme=theme),
        cloud=_start_runpod(root, fleet),
    )
    ConfigStore(paths.config_file).save(config)
    queue = FleetQueue(QueuePaths.under(paths.data_dir))
    try:  # the window dispatches it over the whole fleet as it comes up
        queue.add(JobSpec("demo: lighthouse", demo_workflow(), DEMO_JOB_IMAGES, seed=1000))
    finally:
        queue.close()
    log.info("demo fleet: %d workers, %d of them local", len(workers), len(ports) - 1)
    return paths


def demo_paths(root: Path) -> AppPaths:
    """Everything of the demo in its own folder: the user's config, state and logs (and a
    fleet of theirs that may be running) are never touched."""
    return AppPaths(root / "fleet.json", root / "data", root / "log", root / "state")


def _install(folder: Path, specs: list[DemoWorker], ports: dict[str, int]) -> Path:
    """The simulated install the app launches its local instances from, each one's device
    and faults set by its port."""
    by_port = {
        str(ports[spec.name]): {
            "name": spec.name,
            "device": spec.device,
            "vram_gb": spec.vram_gb,
            "faults": spec.faults,
        }
        for spec in specs
        if spec.local
    }
    return create_sim_install(folder, startup_s=1.0, by_port=by_port)
