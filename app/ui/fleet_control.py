"""Start, stop and restart local instances from the window and the tray, in plain words."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.services.comfy_install import HelpReader, check_instance_args
from app.services.gpus import GpuMonitor
from app.services.launch_plan import launchable_names, plan_launches
from app.services.paths import AppPaths
from app.services.processes import PortBusy
from app.services.supervisor import GpuInUse, Supervisor
from app.services.tasks import OwnedTasks
from app.ui.config_keeper import ConfigKeeper

log = logging.getLogger(__name__)


class Asker(Protocol):
    """How the control asks and tells the user (awaited: never a nested event loop)."""

    async def confirm(self, text: str, default_yes: bool = False) -> bool: ...

    def tell(self, text: str) -> None: ...


class FleetControl:
    """What the Start/Stop/Restart buttons do; asks the user through `asker`."""

    def __init__(
        self,
        supervisor: Supervisor,
        paths: AppPaths,
        gpus: GpuMonitor,
        keeper: ConfigKeeper,
        asker: Asker,
    ) -> None:
        self.supervisor = supervisor
        self.asker = asker
        self._paths = paths
        self._gpus = gpus
        self._keeper = keeper
        self._tasks = OwnedTasks(lambda what, exc: self.error(f"{what} failed: {exc}"))
        self._help = HelpReader()
        self._on_start: list[Callable[[str], None]] = []

    @property
    def config(self) -> FleetConfig:
        return self._keeper.config

    def on_start(self, listener: Callable[[str], None]) -> None:
        """Hear each launch asked for (the window probes it at once)."""
        self._on_start.append(listener)

    def error(self, text: str) -> None:
        log.warning("%s", text)
        self.asker.tell(text)

    async def check_args(self, config: FleetConfig, name: str) -> None:
        """Raise ConfigError if ComfyUI would refuse the instance's extra args (asks the
        install's own --help, off the GUI thread)."""
        await asyncio.to_thread(check_instance_args, config, name, self._help)

    def launchable(self, name: str) -> bool:
        return name in launchable_names(self.config)

    def _run(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        self._tasks.spawn(coroutine, what)

    def start(self, name: str) -> None:
        self._run(self._start(name), f"starting {name}")

    def stop(self, name: str) -> None:
        self._run(self.supervisor.stop(name), f"stopping {name}")

    def restart(self, name: str) -> None:
        self._run(self._restart(name), f"restarting {name}")

    def start_all(self) -> None:
        for name in launchable_names(self.config):
            self.start(name)

    def stop_all(self) -> None:
        self._run(self.supervisor.stop_all(), "stopping every instance")

    async def _restart(self, name: str) -> None:
        await self.supervisor.stop(name)
        await self._start(name, allow_shared_gpu=True)

    async def _start(self, name: str, allow_shared_gpu: bool = False) -> None:
        try:
            plan = await asyncio.to_thread(  # (asks the install's main.py --help, once)
                plan_launches, self.config, self._paths.data_dir, self._gpus.latest, self._help
            )
            refusal = plan.refused.get(name)
            if refusal is not None:
                self.supervisor.refuse(refusal.spec, refusal.reason)
                self.error(f"Cannot start {name}: {refusal.reason}")
                return
            if name not in plan.specs:
                self.error(f"{name} is not launched by ComfyFleet (remote, cloud or disabled).")
                return
            await self.supervisor.start(plan.specs[name], allow_shared_gpu)
            for listener in self._on_start:
                listener(name)
        except GpuInUse as exc:
            if await self.asker.confirm(f"{exc}\n\nStart {name} anyway?"):
                await self._start(name, allow_shared_gpu=True)
        except PortBusy as exc:
            question = f"{exc}\n\nUse port {exc.next_free} for {name}?"
            if await self.asker.confirm(question) and self._change_port(name, exc.next_free):
                await self._start(name, allow_shared_gpu)
        except ComfyFleetError as exc:
            self.error(f"Cannot start {name}: {exc}")

    def _change_port(self, name: str, port: int) -> bool:
        config = self.config
        if name == "master":
            master = dataclasses.replace(config.master, port=port)
            return self._keeper.apply(dataclasses.replace(config, master=master))
        workers = tuple(
            dataclasses.replace(w, port=port) if w.name == name else w for w in config.workers
        )
        return self._keeper.apply(dataclasses.replace(config, workers=workers))

    async def shutdown(self) -> None:
        await self._tasks.cancel_all()
        await self.supervisor.stop_all()
