"""`comfy-fleet demo`: a simulated master and workers on free loopback ports, with a temp config."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.services.paths import AppPaths, resolve_paths
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, http_json, start_sim

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoWorker:
    name: str
    device: str
    vram_gb: int
    time_scale: float = 1.0
    faults: str = ""


# A mixed fleet: a fast local-class GPU, a slower LAN box, and a flaky cloud pod.
DEMO_WORKERS = (
    DemoWorker("gpu1-4090", "NVIDIA GeForce RTX 4090", 24),
    DemoWorker("lan-3090 (slow)", "NVIDIA GeForce RTX 3090", 24, time_scale=3.0),
    DemoWorker("pod-a100 (flaky)", "NVIDIA A100-SXM4-80GB", 80, faults="flaky=0.25"),
    DemoWorker("gpu2-4080", "NVIDIA GeForce RTX 4080", 16),
)


@dataclass
class DemoFleet:
    folder: tempfile.TemporaryDirectory[str]
    instances: list[SimInstance]

    def stop(self) -> None:
        for instance in self.instances:
            instance.stop()
        self.folder.cleanup()


def _args(name: str, device: str, vram_gb: int, time_scale: float = 1.0) -> list[str]:
    return [
        "--sim-name",
        name,
        "--sim-device",
        device,
        "--sim-vram-gb",
        str(vram_gb),
        "--sim-time-scale",
        str(time_scale),
        "--sim-startup-s",
        "0",
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


def start_demo_fleet(count: int = 3) -> tuple[AppPaths, DemoFleet]:
    """Start the simulated fleet and write a config for it; the caller stops it."""
    folder = tempfile.TemporaryDirectory(prefix="comfy-fleet-demo-")
    root = Path(folder.name)
    fleet = DemoFleet(folder, [])
    try:
        return _start(root, fleet, demo_workers(count)), fleet
    except BaseException:  # nothing left running behind a failed start
        fleet.stop()
        raise


def _start(root: Path, fleet: DemoFleet, chosen: list[DemoWorker]) -> AppPaths:
    master = start_sim(
        root / "master", args=_args("master", "NVIDIA GeForce RTX 4090", 24), wait=False
    )
    fleet.instances.append(master)
    for number, spec in enumerate(chosen):
        env = {"COMFYFLEET_SIM_FAULTS": spec.faults} if spec.faults else None
        fleet.instances.append(
            start_sim(
                root / f"worker{number}",
                wait=False,
                env=env,
                args=_args(spec.name, spec.device, spec.vram_gb, spec.time_scale),
            )
        )
    for instance in fleet.instances:
        instance.wait_ready()
    workers = []
    for number, (spec, instance) in enumerate(zip(chosen, fleet.instances[1:], strict=True), 1):
        workers.append(
            WorkerConfig(
                spec.name,
                WorkerKind.REMOTE,
                host="127.0.0.1",
                port=instance.port,
                distributed_id=str(number),
            )
        )
        _register(master, number, spec.name, instance.port)
    paths = resolve_paths(root / "fleet.json")
    config = FleetConfig(master=MasterConfig(port=master.port), workers=tuple(workers))
    ConfigStore(paths.config_file).save(config)
    log.info("demo fleet: master on %s, %d workers", master.url, len(workers))
    return paths


def _register(master: SimInstance, number: int, name: str, port: int) -> None:
    """Tell the master's ComfyUI-Distributed about the worker, as a real setup would have."""
    try:
        http_json(
            f"{master.url}/distributed/config/update_worker",
            {
                "worker_id": str(number),
                "name": name,
                "host": "127.0.0.1",
                "port": port,
                "cuda_device": None,
                "enabled": True,
                "type": "remote",
            },
        )
    except OSError as exc:  # the flaky pod may refuse this once; the demo still opens
        log.warning("could not register %s with the simulated master: %s", name, exc)
