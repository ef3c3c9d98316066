"""The supervisor launching simulated installs through the exact code path of a real one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import pytest_asyncio

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.launch import LaunchSpec, RestartPolicy
from app.services.comfy_client import ComfyClient
from app.services.gpus import GpuReading, GpuSnapshot
from app.services.launch_plan import plan_launches
from app.services.paths import resolve_paths
from app.services.processes import PortBusy
from app.services.storage import ConfigStore
from app.services.supervisor import GpuInUse, InstanceState, InstanceStatus, Supervisor
from app.sim.fleet import SimInstance, create_sim_install, free_port, http_json
from tests.integration.cli_helpers import comfy_fleet, read_until, start_up
from tests.waiting import wait_until

WORKER_GPU = "GPU-9664e333-53f7-c99e-3697-bff5cb199420"


@pytest.fixture
def fleet(tmp_path: Path) -> FleetConfig:
    install = create_sim_install(tmp_path / "ComfyUI")
    return FleetConfig(
        master=MasterConfig(comfyui_dir=str(install), port=free_port(), gpu="0"),
        workers=(
            WorkerConfig(
                "gpu1",
                WorkerKind.LOCAL,
                port=free_port(),
                gpu=WORKER_GPU,
                extra_args=("--preview-method", "auto"),
            ),
        ),
        app=AppSettings(ready_timeout_s=30),
    )


class Watcher:
    def __init__(self, supervisor: Supervisor) -> None:
        self.history: list[InstanceStatus] = []
        self.changed = asyncio.Event()
        supervisor.on_status(self._heard)

    def _heard(self, status: InstanceStatus) -> None:
        self.history.append(status)
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def state(self, name: str) -> InstanceState | None:
        states = [s.state for s in self.history if s.name == name]
        return states[-1] if states else None


@pytest_asyncio.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    client = ComfyClient()
    sup = Supervisor(
        tmp_path / "state" / "instances.json",
        tmp_path / "logs",
        client,
        RestartPolicy(first_delay_s=0.05, loop_exits=3, loop_window_s=60),
        ready_timeout_s=30,
    )
    yield sup
    await sup.stop_all()
    await client.close()


def specs(config: FleetConfig, tmp_path: Path) -> dict[str, LaunchSpec]:
    return plan_launches(config, tmp_path / "data").specs


@pytest.mark.asyncio
async def test_ready_with_the_right_argv_and_environment(
    fleet: FleetConfig, supervisor: Supervisor, tmp_path: Path
) -> None:
    watcher = Watcher(supervisor)
    plan = specs(fleet, tmp_path)
    for spec in plan.values():
        await supervisor.start(spec)
    await watcher.until(
        lambda: (
            watcher.state("master") is InstanceState.READY
            and watcher.state("gpu1") is InstanceState.READY
        )
    )
    worker = http_json(f"http://127.0.0.1:{fleet.workers[0].port}/system_stats")
    assert worker["system"]["argv"] == list(plan["gpu1"].argv[1:])
    status = supervisor.status("gpu1")
    assert status is not None and status.pid is not None
    assert psutil.Process(status.pid).environ()["CUDA_VISIBLE_DEVICES"] == WORKER_GPU
    env_line = next(line for line in supervisor.lines("gpu1") if "environment" in line)
    assert json.loads(env_line.split(": ", 1)[1]) == {
        "COMFYUI_IS_WORKER": "1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": WORKER_GPU,
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    }
    master_env = next(line for line in supervisor.lines("master") if "environment" in line)
    assert "COMFYUI_IS_WORKER" not in master_env
    assert "--user-directory" in worker["system"]["argv"]
    assert supervisor.log_path("gpu1").read_text().count("To see the GUI") == 1
    state = json.loads(supervisor.state_file.read_text())
    record = state["instances"]["gpu1"]
    assert record["pid"] == supervisor.status("gpu1").pid and record["create_time"] > 0  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_kill_9_is_noticed_and_restarted(
    fleet: FleetConfig, supervisor: Supervisor, tmp_path: Path
) -> None:
    watcher = Watcher(supervisor)
    await supervisor.start(specs(fleet, tmp_path)["gpu1"])
    await watcher.until(lambda: watcher.state("gpu1") is InstanceState.READY)
    first = supervisor.status("gpu1")
    assert first is not None and first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    await watcher.until(lambda: watcher.state("gpu1") is InstanceState.RESTARTING, timeout=5)
    await watcher.until(lambda: watcher.state("gpu1") is InstanceState.READY)
    again = supervisor.status("gpu1")
    assert again is not None and again.pid != first.pid and again.restarts == 1
    assert again.last_crash is not None and again.last_crash.startswith("killed by signal")


@pytest.mark.asyncio
async def test_startup_failure_becomes_a_crash_loop_with_its_cause(
    fleet: FleetConfig, supervisor: Supervisor, tmp_path: Path
) -> None:
    watcher = Watcher(supervisor)
    spec = specs(fleet, tmp_path)["gpu1"]
    failing = replace(spec, env={**spec.env, "COMFYFLEET_SIM_FAULTS": "start-fail=cuda-oom"})
    await supervisor.start(failing)
    await watcher.until(lambda: watcher.state("gpu1") is InstanceState.CRASH_LOOP)
    status = supervisor.status("gpu1")
    assert status is not None and status.last_crash is not None
    assert status.last_crash.startswith("CUDA out of memory (exit code 1)")
    assert [s.restart_in_s for s in watcher.history if s.state is InstanceState.RESTARTING] == [
        0.05,
        0.1,
    ]
    assert "not restarting" in status.message


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x7fELF\x02 not a program", "it is not a program for this system"),
        (
            b"#!/nonexistent/python3\n",
            "its first line (#!) names an interpreter that does not exist",
        ),
    ],
)
async def test_a_python_that_cannot_run_is_said_in_one_line(
    fleet: FleetConfig, supervisor: Supervisor, tmp_path: Path, content: bytes, said: str
) -> None:
    """The configured Python is garbage or names a missing interpreter: the instance is crashed
    with the reason (the launch raised an OSError out of start())."""
    python = tmp_path / "python"
    python.write_bytes(content)
    python.chmod(0o755)
    spec = specs(fleet, tmp_path)["gpu1"]
    status = await supervisor.start(replace(spec, argv=(str(python), *spec.argv[1:])))
    status = supervisor.status("gpu1") or status
    assert status.state is InstanceState.CRASHED
    assert status.last_crash is not None
    assert status.last_crash.startswith(f"{python} cannot run: {said}")
    assert status.message == "not started: fix its Python"


@pytest.mark.asyncio
async def test_port_conflict_names_the_holder(
    fleet: FleetConfig,
    supervisor: Supervisor,
    sim_factory: Callable[..., SimInstance],
    tmp_path: Path,
) -> None:
    holder = sim_factory("holder", port=fleet.workers[0].port)
    with pytest.raises(PortBusy) as error:
        await supervisor.start(specs(fleet, tmp_path)["gpu1"])
    assert f"process {holder.process.pid}" in str(error.value)
    assert error.value.next_free != fleet.workers[0].port
    assert "app.sim" in str(error.value)


@pytest.mark.asyncio
async def test_two_instances_on_one_gpu_need_confirmation(
    fleet: FleetConfig, supervisor: Supervisor, tmp_path: Path
) -> None:
    plan = specs(fleet, tmp_path)
    same = replace(fleet, master=replace(fleet.master, gpu=WORKER_GPU))
    await supervisor.start(plan["gpu1"])
    with pytest.raises(GpuInUse, match="Confirm"):
        await supervisor.start(specs(same, tmp_path)["master"])
    await supervisor.start(specs(same, tmp_path)["master"], allow_shared_gpu=True)


@pytest.mark.asyncio
async def test_an_instance_with_no_gpu_chosen_counts_as_on_gpu_0(
    fleet: FleetConfig, supervisor: Supervisor, tmp_path: Path
) -> None:
    """Unpinned, it sees every GPU and computes on the first: the guard covers it."""
    gpus = GpuSnapshot(
        tuple(
            GpuReading(i, "NVIDIA H200", f"GPU-{i}bbb", f"0000:0{i}:00.0", 1, 0, 1, 0, 30, 70, 700)
            for i in (0, 1)
        )
    )
    unpinned = replace(fleet, master=replace(fleet.master, gpu=None))
    on_first = replace(unpinned, workers=(replace(fleet.workers[0], gpu="0"),))
    plan = plan_launches(on_first, tmp_path / "data", gpus).specs
    await supervisor.start(plan["gpu1"])
    with pytest.raises(GpuInUse, match=r"GPU GPU-0bbb \(the first visible: no GPU chosen\)"):
        await supervisor.start(plan["master"])
    elsewhere = replace(unpinned, workers=(replace(fleet.workers[0], gpu="1"),))
    other = plan_launches(elsewhere, tmp_path / "data", gpus).specs
    await supervisor.stop("gpu1")
    await supervisor.start(other["gpu1"])
    await supervisor.start(other["master"])  # GPU 0 is its own now


@pytest.mark.asyncio
async def test_not_ready_in_time_counts_as_a_crash(fleet: FleetConfig, tmp_path: Path) -> None:
    client = ComfyClient()
    sup = Supervisor(
        tmp_path / "s.json",
        tmp_path / "logs",
        client,
        RestartPolicy(first_delay_s=30),
        ready_timeout_s=0.5,
    )
    watcher = Watcher(sup)
    spec = specs(fleet, tmp_path)["gpu1"]
    slow = replace(spec, argv=(*spec.argv, "--sim-startup-s", "20"))
    try:
        await sup.start(slow)
        await watcher.until(lambda: watcher.state("gpu1") is InstanceState.RESTARTING)
        status = sup.status("gpu1")
        assert status is not None and "not ready after 0.5 s" in (status.last_crash or "")
    finally:
        await sup.stop_all()
        await client.close()


def _state(path: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.asyncio
async def test_a_new_supervisor_adopts_survivors(fleet: FleetConfig, tmp_path: Path) -> None:
    config_file = tmp_path / "fleet.json"
    ConfigStore(config_file).save(fleet)
    paths = resolve_paths(config_file)
    state_file = paths.state_dir / "instances.json"
    up = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config_file), "up"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: (
                all(
                    r.get("state") == "ready"
                    for r in _state(state_file).get("instances", {}).values()
                )
                and len(_state(state_file).get("instances", {})) == 2
            )
        )
        up.kill()  # the supervisor dies without stopping anything
        up.wait()
    finally:
        if up.poll() is None:
            up.kill()
    records = _state(state_file)["instances"]
    pids = {name: record["pid"] for name, record in records.items()}
    assert all(psutil.pid_exists(pid) for pid in pids.values())
    status = json.loads(comfy_fleet("status", "--json", config=config_file).stdout)
    assert status["master"]["pid"] == pids["master"] and status["master"]["state"] == "online"
    client = ComfyClient()
    sup = Supervisor(state_file, paths.log_dir / "instances", client)
    watcher = Watcher(sup)
    try:
        adopted = sup.adopt(specs(fleet, tmp_path))
        assert sorted(adopted) == ["gpu1", "master"]
        await watcher.until(lambda: watcher.state("gpu1") is InstanceState.READY)
        assert sup.status("gpu1").pid == pids["gpu1"]  # type: ignore[union-attr]
        os.kill(pids["gpu1"], signal.SIGKILL)  # an adopted instance is still watched
        await watcher.until(lambda: watcher.state("gpu1") is InstanceState.RESTARTING, timeout=5)
    finally:
        await sup.stop_all()
        await client.close()
    assert (
        not psutil.pid_exists(pids["master"])
        or psutil.Process(pids["master"]).status() == psutil.STATUS_ZOMBIE
    )


@pytest.mark.asyncio
async def test_a_recycled_pid_is_left_alone(fleet: FleetConfig, tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        config_file = tmp_path / "fleet.json"
        ConfigStore(config_file).save(fleet)
        paths = resolve_paths(config_file)
        state_file = paths.state_dir / "instances.json"
        state_file.parent.mkdir(parents=True, exist_ok=True)
        real_start = psutil.Process(stranger.pid).create_time()
        state_file.write_text(
            json.dumps(
                {
                    "instances": {
                        "master": {
                            "pid": stranger.pid,
                            "create_time": real_start - 3600,
                            "state": "ready",
                        }
                    }
                }
            )
        )
        client = ComfyClient()
        sup = Supervisor(state_file, tmp_path / "logs", client)
        try:
            assert sup.adopt(specs(fleet, tmp_path)) == []
            await sup.stop_all()
        finally:
            await client.close()
        state_file.write_text(
            json.dumps(
                {
                    "instances": {
                        "master": {
                            "pid": stranger.pid,
                            "create_time": real_start - 3600,
                            "state": "ready",
                        }
                    }
                }
            )
        )
        result = comfy_fleet("down", config=config_file)
        assert result.returncode == 0 and "nothing was running" in result.stdout
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()


def test_up_prints_states_and_down_stops_everything(fleet: FleetConfig, tmp_path: Path) -> None:
    config_file = tmp_path / "fleet.json"
    ConfigStore(config_file).save(fleet)
    up = start_up(config_file)
    assert up.stdout is not None
    seen = read_until(up, lambda lines: sum("ready" in line for line in lines) >= 2)
    assert any("ComfyUI:" in line and "configured folder" in line for line in seen)
    logs = comfy_fleet("logs", "gpu1", config=config_file)
    assert "To see the GUI go to" in logs.stdout
    down = comfy_fleet("down", config=config_file)
    assert down.returncode == 0 and "asking the supervisor" in down.stdout
    assert up.wait(30) == 0
    rest = up.stdout.read()
    assert "master: stopped" in rest and "gpu1: stopped" in rest
    state = json.loads((resolve_paths(config_file).state_dir / "instances.json").read_text())
    for record in state["instances"].values():
        assert record["state"] == "stopped"


def test_propose_without_gpu_is_a_cpu_master(tmp_path: Path) -> None:
    config_file = tmp_path / "fleet.json"
    shown = comfy_fleet("propose", config=config_file)
    assert shown.returncode == 0 and "master: GPU cpu" in shown.stdout
    assert "No NVIDIA GPU found" in shown.stdout and not config_file.exists()
    assert comfy_fleet("propose", "--apply", config=config_file).returncode == 0
    assert ConfigStore(config_file).load().config.master.gpu == "cpu"


def test_logs_follow_prints_new_lines(fleet: FleetConfig, tmp_path: Path) -> None:
    config_file = tmp_path / "fleet.json"
    ConfigStore(config_file).save(fleet)
    log_file = resolve_paths(config_file).log_dir / "instances" / "master.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("old line\n")
    follow = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config_file), "logs", "master", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "old line\n"
        with log_file.open("a") as handle:
            handle.write("new line\n")
        assert follow.stdout.readline() == "new line\n"
    finally:
        follow.terminate()
        follow.wait(10)
    missing = comfy_fleet("logs", "nobody", config=config_file)
    assert missing.returncode == 2 and "name" in missing.stderr
