"""No part of the supervisor dies unseen: a failing listener or a failing pump does not stop
crashes from being noticed and instances from being restarted."""

from __future__ import annotations

import os
import queue
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.launch import LaunchSpec, RestartPolicy
from app.services.comfy_client import ComfyClient
from app.services.launch_plan import plan_launches
from app.services.supervisor import InstanceState, InstanceStatus, Supervisor
from app.sim.fleet import create_sim_install, free_port
from tests.integration.test_supervisor import Watcher

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    client = ComfyClient()
    sup = Supervisor(
        tmp_path / "state.json", tmp_path / "logs", client, RestartPolicy(first_delay_s=0.05)
    )
    yield sup
    await sup.stop_all()
    await client.close()


def _spec(tmp_path: Path) -> LaunchSpec:
    install = create_sim_install(tmp_path / "ComfyUI")
    worker = WorkerConfig("w1", WorkerKind.LOCAL, port=free_port(), gpu="cpu")
    config = FleetConfig(master=MasterConfig(comfyui_dir=str(install)), workers=(worker,))
    return plan_launches(config, tmp_path / "data").specs["w1"]


async def _kill_and_see_it_back(supervisor: Supervisor, watcher: Watcher) -> None:
    await watcher.until(lambda: watcher.state("w1") is InstanceState.READY)
    status = supervisor.status("w1")
    assert status is not None and status.pid is not None
    os.kill(status.pid, signal.SIGKILL)
    await watcher.until(lambda: watcher.state("w1") is InstanceState.RESTARTING)
    await watcher.until(lambda: watcher.state("w1") is InstanceState.READY)


async def test_a_failing_listener_does_not_stop_restarts(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    def broken(status: InstanceStatus) -> None:
        raise RuntimeError("a bug in a window")

    supervisor.on_status(broken)
    watcher = Watcher(supervisor)
    await supervisor.start(_spec(tmp_path))
    await _kill_and_see_it_back(supervisor, watcher)
    assert supervisor.status("w1").restarts == 1  # type: ignore[union-attr]


class _FailsOnce(queue.SimpleQueue):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def get_nowait(self) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("the pump broke")
        return super().get_nowait()


async def test_a_failing_pump_is_said_and_started_again(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    heard: list[str] = []
    supervisor.on_failure(lambda what, error: heard.append(f"{what}: {error}"))
    supervisor._inbox = _FailsOnce()
    watcher = Watcher(supervisor)
    await supervisor.start(_spec(tmp_path))
    await _kill_and_see_it_back(supervisor, watcher)
    assert heard == ["watching the instances: the pump broke"]
