"""From the config to exact launch specs: which ComfyUI, which Python, which GPU UUIDs."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from app.core.config import FleetConfig, WorkerKind
from app.core.errors import ComfyFleetError
from app.core.launch import LaunchSpec, RestartPolicy, choose_python, find_comfyui, launch_for
from app.services.comfy_client import ComfyClient
from app.services.gpus import GpuSnapshot
from app.services.paths import AppPaths
from app.services.supervisor import Supervisor


class NoComfyUI(ComfyFleetError):
    pass


@dataclass(frozen=True)
class LaunchPlan:
    specs: dict[str, LaunchSpec]
    notes: list[str] = field(default_factory=list)  # what was picked, and why


def _exists(path: PurePath) -> bool:
    return Path(path).is_file()


def launchable_names(config: FleetConfig) -> list[str]:
    names = ["master"] if config.master.launched_by_app else []
    return names + [w.name for w in config.workers if w.kind is WorkerKind.LOCAL and w.enabled]


def plan_launches(
    config: FleetConfig, data_dir: Path, gpus: GpuSnapshot | None = None
) -> LaunchPlan:
    names = launchable_names(config)
    if not names:
        return LaunchPlan({}, ["nothing to launch: no ComfyUI folder and no local workers"])
    found = find_comfyui(
        config.master.comfyui_dir, os.environ.get("COMFYUI_PATH"), PurePath(Path.home()), _exists
    )
    if found is None:
        raise NoComfyUI(
            "No ComfyUI found: set its folder (comfy-fleet master set --comfyui DIR) or "
            "COMFYUI_PATH; looked in ~/ComfyUI, the portable build and ComfyUI Desktop's folder."
        )
    python = choose_python(found.path, config.master.python, sys.executable, _exists)
    notes = [f"ComfyUI: {found.path} ({found.reason})", f"Python: {python.path} ({python.reason})"]
    by_index = {str(g.index): g.uuid for g in (gpus.gpus if gpus else ())}

    def resolve(gpu: str) -> str:  # pin by UUID: indexes differ between CUDA and NVML order
        return by_index.get(gpu, gpu)

    specs = {}
    for name in names:
        spec = launch_for(config, name, found.path, python.path, PurePath(data_dir / "instances"))
        if spec.gpu not in (None, "cpu"):
            env = {**spec.env, "CUDA_VISIBLE_DEVICES": resolve(spec.gpu)}
            spec = LaunchSpec(spec.name, spec.argv, env, spec.cwd, spec.port, spec.gpu, spec.listen)
        specs[name] = spec
    return LaunchPlan(specs, notes)


def state_file(paths: AppPaths) -> Path:
    return paths.state_dir / "instances.json"


def make_supervisor(config: FleetConfig, paths: AppPaths, client: ComfyClient) -> Supervisor:
    policy = RestartPolicy(
        loop_exits=config.app.crash_loop_exits, loop_window_s=config.app.crash_loop_window_s
    )
    return Supervisor(
        state_file(paths), paths.log_dir / "instances", client, policy, config.app.ready_timeout_s
    )
