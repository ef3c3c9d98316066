"""Start, stop and restart local instances from the window and the tray, in plain words."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.net import base_url
from app.core.tunnel import EXPOSURE, TunnelState
from app.services.gpus import GpuMonitor
from app.services.launch_plan import launchable_names, plan_launches
from app.services.paths import AppPaths
from app.services.processes import PortBusy
from app.services.supervisor import GpuInUse, Supervisor
from app.services.tunnel import TunnelRunner, find_cloudflared

log = logging.getLogger(__name__)


class FleetControl:
    """What the Start/Stop/Restart buttons do; asks the user through the given callbacks."""

    def __init__(
        self,
        supervisor: Supervisor,
        paths: AppPaths,
        gpus: GpuMonitor,
        config: FleetConfig,
        tunnel: TunnelRunner,
    ) -> None:
        self.supervisor = supervisor
        self.tunnel = tunnel
        self._paths = paths
        self._gpus = gpus
        self.config = config
        self.confirm: Callable[[str], bool] = lambda text: False
        self.error: Callable[[str], None] = lambda text: log.error("%s", text)
        self.change_port: Callable[[str, int], bool] = lambda name, port: False
        self.save_config: Callable[[FleetConfig], bool] = lambda config: False
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

    def toggle_tunnel(self) -> None:
        if self.tunnel.status.state in (TunnelState.STOPPED, TunnelState.FAILED):
            self._run(self._start_tunnel())
        else:
            self._run(self.tunnel.stop())

    async def _start_tunnel(self) -> None:
        settings = self.config.tunnel
        if settings.confirm_exposure:
            if not self.confirm(EXPOSURE):
                return
            tunnel = dataclasses.replace(settings, confirm_exposure=False)  # asked once
            self.save_config(dataclasses.replace(self.config, tunnel=tunnel))
        binary = find_cloudflared(settings.cloudflared_path, self._paths.data_dir)
        master = self.config.master
        self.tunnel.master_url = base_url(master.host, master.port)
        try:
            await self.tunnel.start(binary, self.config.master.port, settings.use_http2)
        except ComfyFleetError as exc:
            self.error(f"The tunnel did not come up: {exc}")

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.tunnel.status.state not in (TunnelState.STOPPED, TunnelState.FAILED):
            await self.tunnel.stop()  # restores the master's host
        await self.supervisor.stop_all()
