"""From the config to exact launch specs: which ComfyUI, which Python, which GPU UUIDs, and
which instances cannot be launched as configured (and why)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath

from app.core.comfy_args import (
    instance_arg_problems,
    missing_flags,
    spelled_out,
    without_gpu_pinning,
)
from app.core.config import FleetConfig, WorkerKind
from app.core.errors import ComfyFleetError
from app.core.launch import CrashCause, LaunchSpec, RestartPolicy, launch_for
from app.services.comfy_client import ComfyClient
from app.services.comfy_install import HelpReader, find_install
from app.services.gpus import GpuSnapshot
from app.services.paths import AppPaths
from app.services.supervisor import Supervisor


class NoComfyUI(ComfyFleetError):
    pass


@dataclass(frozen=True)
class Refusal:
    spec: LaunchSpec
    reason: str  # "bad launch argument: no flag --lowvarm: did you mean --lowvram?"


@dataclass(frozen=True)
class LaunchPlan:
    specs: dict[str, LaunchSpec]  # what can be launched
    notes: list[str] = field(default_factory=list)  # what was picked, and why
    refused: dict[str, Refusal] = field(default_factory=dict)  # what ComfyUI would refuse


def launchable_names(config: FleetConfig) -> list[str]:
    names = ["master"] if config.master.launched_by_app else []
    return names + [w.name for w in config.workers if w.kind is WorkerKind.LOCAL and w.enabled]


def plan_launches(
    config: FleetConfig,
    data_dir: Path,
    gpus: GpuSnapshot | None = None,
    help_reader: HelpReader | None = None,
) -> LaunchPlan:
    names = launchable_names(config)
    if not names:
        return LaunchPlan({}, ["nothing to launch: no ComfyUI folder and no local workers"])
    install = find_install(config)
    if install is None:
        raise NoComfyUI(
            "No ComfyUI found: set its folder (comfy-fleet master set --comfyui DIR) or "
            "COMFYUI_PATH; looked in ~/ComfyUI, the portable build and ComfyUI Desktop's folder."
        )
    reader = help_reader or HelpReader()
    line = reader.read(install)
    notes = list(install.notes)
    if line is None:
        notes.append(f"{reader.problem}; extra args are checked at launch only")
    by_index = {str(g.index): g.uuid for g in (gpus.gpus if gpus else ())}
    specs, refused = {}, {}
    for name in names:
        spec = launch_for(
            config, name, install.folder, install.python, PurePath(data_dir / "instances"), line
        )
        extra = config.master.extra_args if name == "master" else _worker_args(config, name)
        kept, _ = without_gpu_pinning(extra, line)  # (left out of the spec, with a note)
        problems = instance_arg_problems(kept, spec.gpu, line, worker=name != "master")
        own = len(spec.argv) - len(spelled_out(kept, line))
        problems += [
            f"ComfyFleet passes {flag}, which this ComfyUI does not have: update ComfyUI"
            for flag in missing_flags(spec.argv[2:own], line)
        ]
        if problems:
            refused[name] = Refusal(spec, f"{CrashCause.BAD_ARGUMENT.value}: {'; '.join(problems)}")
            continue
        if spec.note:
            notes.append(f"{name}: {spec.note}")
        if spec.gpu not in (None, "cpu"):  # pin by UUID: indexes differ in CUDA and NVML order
            uuid = by_index.get(spec.gpu, spec.gpu)
            spec = replace(spec, env={**spec.env, "CUDA_VISIBLE_DEVICES": uuid})
        elif spec.gpu is None and by_index:
            # Every GPU, said explicitly: left unsaid, 0.38 on Windows forces GPU 0 alone.
            every = ",".join(by_index.values())
            spec = replace(spec, env={**spec.env, "CUDA_VISIBLE_DEVICES": every})
            notes.append(f"{name}: no GPU chosen: it sees all {len(by_index)} GPUs")
        specs[name] = spec
    return LaunchPlan(specs, notes, refused)


def _worker_args(config: FleetConfig, name: str) -> tuple[str, ...]:
    worker = config.worker(name)
    return worker.extra_args if worker else ()


def state_file(paths: AppPaths) -> Path:
    return paths.state_dir / "instances.json"


def make_supervisor(config: FleetConfig, paths: AppPaths, client: ComfyClient) -> Supervisor:
    policy = RestartPolicy(
        loop_exits=config.app.crash_loop_exits, loop_window_s=config.app.crash_loop_window_s
    )
    return Supervisor(
        state_file(paths), paths.log_dir / "instances", client, policy, config.app.ready_timeout_s
    )
