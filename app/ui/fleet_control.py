"""Start, stop and restart local instances from the window and the tray, in plain words."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.services.gpus import GpuMonitor
from app.services.launch_plan import launchable_names, plan_launches
from app.services.paths import AppPaths
from app.services.processes import PortBusy
from app.services.supervisor import GpuInUse, Supervisor

log = logging.getLogger(__name__)


class FleetControl:
    """What the Start/Stop/Restart buttons do; asks the user through the given callbacks."""

    def __init__(
        self, supervisor: Supervisor, paths: AppPaths, gpus: GpuMonitor, config: FleetConfig
    ) -> None:
        self.supervisor = supervisor
        self._paths = paths
        self._gpus = gpus
        self.config = config
        self.confirm: Callable[[str], bool] = lambda text: False
        self.error: Callable[[str], None] = lambda text: log.error("%s", text)
        self.change_port: Callable[[str, int], bool] = lambda name, port: False
        self._tasks: set[asyncio.Task[Any]] = set()

    def launchable(self, name: str) -> bool:
        return name in launchable_names(self.config)

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self, name: str) -> None:
        self._run(self._start(name))

    def stop(self, name: str) -> None:
        self._run(self.supervisor.stop(name))

    def restart(self, name: str) -> None:
        self._run(self._restart(name))

    def start_all(self) -> None:
        for name in launchable_names(self.config):
            self.start(name)

    def stop_all(self) -> None:
        self._run(self.supervisor.stop_all())

    async def _restart(self, name: str) -> None:
        await self.supervisor.stop(name)
        await self._start(name, allow_shared_gpu=True)

    async def _start(self, name: str, allow_shared_gpu: bool = False) -> None:
        try:
            plan = plan_launches(self.config, self._paths.data_dir, self._gpus.latest)
            if name not in plan.specs:
                self.error(f"{name} is not launched by ComfyFleet (remote, cloud or disabled).")
                return
            await self.supervisor.start(plan.specs[name], allow_shared_gpu)
        except GpuInUse as exc:
            if self.confirm(f"{exc}\n\nStart {name} anyway?"):
                await self._start(name, allow_shared_gpu=True)
        except PortBusy as exc:
            if self.confirm(f"{exc}\n\nUse port {exc.next_free} for {name}?") and self.change_port(
                name, exc.next_free
            ):
                await self._start(name, allow_shared_gpu)
        except ComfyFleetError as exc:
            self.error(f"Cannot start {name}: {exc}")

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.supervisor.stop_all()
