"""Start, stop and restart local instances from the window and the tray, in plain words."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import platform
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.tunnel import (
    EXPOSURE,
    PINNED_SHA256,
    PINNED_VERSION,
    TunnelState,
    release_asset,
    token_key,
)
from app.services.comfy_install import HelpReader, check_instance_args
from app.services.gpus import GpuMonitor
from app.services.launch_plan import launchable_names, plan_launches
from app.services.paths import AppPaths
from app.services.processes import PortBusy
from app.services.secrets import SecretStore
from app.services.supervisor import GpuInUse, Supervisor
from app.services.tunnel import TunnelRunner, download_cloudflared, find_cloudflared

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
        secrets: SecretStore | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.tunnel = tunnel
        self.secrets = secrets or SecretStore()
        self._paths = paths
        self._gpus = gpus
        self.config = config
        self.confirm: Callable[[str], bool] = lambda text: False
        self.error: Callable[[str], None] = lambda text: log.error("%s", text)
        self.change_port: Callable[[str, int], bool] = lambda name, port: False
        self.save_config: Callable[[FleetConfig], bool] = lambda config: False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._help = HelpReader()

    async def check_args(self, config: FleetConfig, name: str) -> None:
        """Raise ConfigError if ComfyUI would refuse the instance's extra args (asks the
        install's own --help, off the GUI thread)."""
        await asyncio.to_thread(check_instance_args, config, name, self._help)

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

    def tunnel_running(self) -> bool:
        return self.tunnel.status.state not in (TunnelState.STOPPED, TunnelState.FAILED)

    def toggle_tunnel(self) -> None:
        """One click: the last kind of tunnel (quick the first time), or stop the running one."""
        if self.tunnel_running():
            self._run(self.tunnel.stop())
        else:
            self.start_tunnel(self.tunnel.status.name)

    def start_tunnel(self, name: str = "quick") -> None:
        if self.tunnel_running():
            self.error("A tunnel is already running: stop it first.")
            return
        self._run(self._start_tunnel(name))

    def _named(self, name: str) -> tuple[str, str] | None:
        """A named tunnel's hostname and token, or None (after saying why)."""
        named = next((t for t in self.config.tunnel.named if t.name == name), None)
        if named is None:
            self.error(f"There is no named tunnel {name!r} any more.")
            return None
        try:
            token = self.secrets.get(token_key(name))
        except ComfyFleetError as exc:
            self.error(f"Cannot read the token of tunnel {name}: {exc}")
            return None
        if not token:
            self.error(f"No token is stored for tunnel {name}: add it again with its token.")
            return None
        return named.hostname, token

    async def _start_tunnel(self, name: str = "quick") -> None:
        settings = self.config.tunnel
        if settings.confirm_exposure:
            if not self.confirm(EXPOSURE):
                return
            tunnel = dataclasses.replace(settings, confirm_exposure=False)  # asked once
            self.save_config(dataclasses.replace(self.config, tunnel=tunnel))
        hostname = token = None
        if name != "quick":
            found = self._named(name)
            if found is None:
                return
            hostname, token = found
        try:
            binary = find_cloudflared(settings.cloudflared_path, self._paths.data_dir)
        except ComfyFleetError as exc:
            self.error(f"The tunnel cannot start: {exc}")
            return
        if binary is None:
            binary = await self._offer_download()
            if binary is None:
                return
        master = self.config.master
        self.tunnel.master_url = master.url
        try:
            await self.tunnel.start(binary, master.port, settings.use_http2, name, hostname, token)
        except ComfyFleetError as exc:
            self.error(f"The tunnel did not come up: {exc}")

    async def _offer_download(self) -> Path | None:
        """cloudflared is missing: explain, and download the pinned release if the user agrees."""
        try:
            asset = release_asset(platform.system(), platform.machine())
        except ValueError as exc:
            self.error(f"cloudflared is not installed, and {exc}: install it, then try again.")
            return None
        checksum = PINNED_SHA256.get(asset.name)
        where = f"the settings, PATH and {self._paths.data_dir / 'bin'}"
        if checksum is None:
            self.error(
                f"cloudflared is not installed (looked in {where}). Install it from "
                "Cloudflare's releases or your package manager, then try again."
            )
            return None
        base = self.config.tunnel.download_base_url
        question = (
            f"cloudflared is not installed (looked in {where}).\n\nDownload cloudflared "
            f"{PINNED_VERSION} ({asset.name}) from {base}? It runs only if its SHA-256 matches."
        )
        if not self.confirm(question):
            return None
        try:
            return await download_cloudflared(
                base, PINNED_VERSION, asset, checksum, self._paths.data_dir
            )
        except (ComfyFleetError, OSError, aiohttp.ClientError) as exc:
            self.error(f"cloudflared was not installed: {exc}")
            return None

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.tunnel_running():
            await self.tunnel.stop()  # restores the master's host
        await self.supervisor.stop_all()
