"""Extra launch arguments: checked against the install's own --help before a launch, and a
refusal by ComfyUI (exit 2) named as such and never retried."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.launch import RestartPolicy
from app.services.comfy_client import ComfyClient
from app.services.gpus import GpuReading, GpuSnapshot
from app.services.launch_plan import plan_launches
from app.services.storage import ConfigStore
from app.services.supervisor import InstanceState, Supervisor
from app.sim.fleet import create_sim_install, free_port
from tests.integration.cli_helpers import comfy_fleet, read_until, start_up
from tests.integration.test_supervisor import Watcher


def _fleet(tmp_path: Path, *extra: str) -> FleetConfig:
    install = create_sim_install(tmp_path / "ComfyUI")
    worker = WorkerConfig("w1", WorkerKind.LOCAL, port=free_port(), gpu="cpu", extra_args=extra)
    return FleetConfig(
        master=MasterConfig(comfyui_dir=str(install), port=free_port(), gpu="cpu"),
        workers=(worker,),
        app=AppSettings(ready_timeout_s=30),
    )


@pytest_asyncio.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    client = ComfyClient()
    sup = Supervisor(
        tmp_path / "state.json", tmp_path / "logs", client, RestartPolicy(first_delay_s=0.05)
    )
    yield sup
    await sup.stop_all()
    await client.close()


@pytest.mark.asyncio
async def test_a_refused_command_line_is_a_bad_argument_and_not_retried(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    spec = plan_launches(_fleet(tmp_path), tmp_path / "data").specs["w1"]
    watcher = Watcher(supervisor)
    await supervisor.start(replace(spec, argv=(*spec.argv, "--cuda-device", "1", "1")))
    await watcher.until(lambda: watcher.state("w1") is InstanceState.CRASHED)
    status = supervisor.status("w1")
    assert status is not None and status.restarts == 0 and status.restart_in_s is None
    assert status.last_crash == "bad launch argument: unrecognized arguments: 1"
    assert "not restarted" in status.message
    assert InstanceState.RESTARTING not in [s.state for s in watcher.history]


def test_the_plan_refuses_what_comfyui_would_and_drops_gpu_pinning(tmp_path: Path) -> None:
    plan = plan_launches(_fleet(tmp_path, "--lowvarm"), tmp_path / "data")
    assert "w1" not in plan.specs and "master" in plan.specs
    assert plan.refused["w1"].reason == (
        "bad launch argument: no flag --lowvarm: did you mean --lowvram?"
    )
    config = _fleet(tmp_path, "--cuda-device", "1", "--preview-method", "auto")
    plan = plan_launches(config, tmp_path / "data")
    assert plan.specs["w1"].argv[-2:] == ("--preview-method", "auto")
    assert "w1: left out --cuda-device 1: the GPU is chosen in the GPU field" in plan.notes


def test_up_starts_the_rest_and_names_the_bad_argument(tmp_path: Path) -> None:
    config_file = tmp_path / "fleet.json"
    ConfigStore(config_file).save(_fleet(tmp_path, "--lowvarm"))
    up = start_up(config_file)
    try:
        seen = read_until(up, lambda lines: any("master: ready" in line for line in lines))
        status = json.loads(comfy_fleet("status", "--json", config=config_file).stdout)
    finally:
        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=30)[0]
    said = "".join(seen)
    assert (
        "w1: not started: bad launch argument: no flag --lowvarm: did you mean --lowvram?" in said
    )
    assert up.returncode == 1  # one of two did not start
    worker = status["workers"][0]
    assert worker["state"] == "crashed" and worker["last_crash"].startswith("bad launch argument")
    assert "master: stopped" in rest


def test_extra_args_are_checked_when_saved(tmp_path: Path) -> None:
    config_file = tmp_path / "fleet.json"
    install = create_sim_install(tmp_path / "ComfyUI")
    assert (
        comfy_fleet("master", "set", "--comfyui", str(install), config=config_file).returncode == 0
    )
    good = comfy_fleet(
        "worker", "add", "local", "--name", "w1", "--extra-args", "--lowvram", config=config_file
    )
    assert good.returncode == 0, good.stderr
    typo = comfy_fleet(
        "worker", "add", "local", "--name", "w2", "--extra-args", "--lowvarm", config=config_file
    )
    assert typo.returncode == 2
    assert typo.stderr.strip() == (
        "comfy-fleet: error: extra-args: no flag --lowvarm: did you mean --lowvram?"
    )
    pinned = comfy_fleet(
        "worker", "edit", "w1", "--extra-args", "--cuda-device 1", config=config_file
    )
    assert pinned.returncode == 2 and "the GPU is chosen in the GPU field" in pinned.stderr
    master = comfy_fleet("master", "set", "--extra-args", "--highvram", config=config_file)
    assert master.returncode == 0 and "--highvram" in master.stdout
    workers = json.loads(comfy_fleet("worker", "list", "--json", config=config_file).stdout)
    assert [(w["name"], w["extra_args"]) for w in workers] == [("w1", ["--lowvram"])]


@pytest.mark.asyncio
async def test_a_fresh_data_folder_gets_the_folders_comfyui_requires(tmp_path: Path) -> None:
    config = _fleet(tmp_path)
    data = tmp_path / "fresh"
    spec = plan_launches(config, data).specs["w1"]
    assert not any(Path(folder).exists() for folder in spec.folders)
    client = ComfyClient()
    sup = Supervisor(tmp_path / "state.json", tmp_path / "logs", client)
    watcher = Watcher(sup)
    try:
        await sup.start(spec)
        await watcher.until(lambda: watcher.state("w1") is InstanceState.READY)
        assert all(Path(folder).is_dir() for folder in spec.folders)
    finally:
        await asyncio.wait_for(sup.stop_all(), 30)
        await client.close()


@pytest.mark.asyncio
async def test_a_038_install_is_launched_with_its_own_command_line(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    """Its --help is 0.38's: a 0.3.64-only flag and an abbreviation 0.38 made ambiguous are
    refused by name, a good abbreviation goes in full, and what ComfyFleet passes starts it."""

    def fleet(*extra: str) -> FleetConfig:
        config = _fleet(tmp_path, *extra)
        create_sim_install(Path(config.master.comfyui_dir or ""), comfyui_version="0.38")
        return config

    plan = plan_launches(fleet("--normalvram"), tmp_path / "data")
    assert plan.refused["w1"].reason.startswith("bad launch argument: no flag --normalvram")
    plan = plan_launches(fleet("--high"), tmp_path / "data")
    assert "--high is ambiguous: it could be --high-ram, --highvram" in plan.refused["w1"].reason
    plan = plan_launches(fleet("--preview-m", "auto"), tmp_path / "data")
    assert plan.specs["w1"].argv[-2:] == ("--preview-method", "auto") and not plan.refused
    watcher = Watcher(supervisor)
    await supervisor.start(plan.specs["w1"])
    await watcher.until(lambda: watcher.state("w1") is InstanceState.READY)


def _two_gpus() -> GpuSnapshot:
    return GpuSnapshot(
        tuple(
            GpuReading(
                i, "NVIDIA H200", f"GPU-{i}aaa", f"0000:0{i}:00.0", 1, 0, 1, 0, 30, 70.0, 700.0
            )
            for i in (0, 1)
        )
    )


@pytest.mark.asyncio
async def test_038_instances_each_have_a_database_and_every_gpu_said_explicitly(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    """A master with no GPU chosen sees every GPU by UUID, said in CUDA_VISIBLE_DEVICES (0.38 on
    Windows forces GPU 0 alone otherwise); master and worker start side by side on one 0.38
    install (one shared asset database would stop the second: ASSETS_STARTUP_FAILED)."""
    config = _fleet(tmp_path)
    config = replace(config, master=replace(config.master, gpu=None))
    create_sim_install(Path(config.master.comfyui_dir or ""), comfyui_version="0.38")
    plan = plan_launches(config, tmp_path / "data", _two_gpus())
    master = plan.specs["master"]
    assert master.env["CUDA_VISIBLE_DEVICES"] == "GPU-0aaa,GPU-1aaa"
    assert "master: no GPU chosen: it sees all 2 GPUs" in plan.notes
    watcher = Watcher(supervisor)
    for spec in plan.specs.values():
        await supervisor.start(spec)
    await watcher.until(
        lambda: all(watcher.state(n) is InstanceState.READY for n in ("master", "w1"))
    )
    client = ComfyClient()
    try:
        stats = await client.probe(f"http://127.0.0.1:{master.port}")
    finally:
        await client.close()
    assert stats.stats is not None and stats.stats.other_devices == 1
