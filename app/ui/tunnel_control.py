"""What the Tunnel button and menu do: a quick or named tunnel for the master, a quick one for
a local worker, the cloudflared to use (found, chosen, or the pinned release downloaded)."""

from __future__ import annotations

import dataclasses
import logging
import platform
from collections.abc import Callable
from pathlib import Path

import aiohttp

from app.core.config import MASTER, FleetConfig, WorkerKind
from app.core.errors import ComfyFleetError
from app.core.names import file_stem
from app.core.tunnel import (
    EXPOSURE,
    PINNED_SHA256,
    PINNED_VERSION,
    TunnelState,
    release_asset,
    token_key,
)
from app.services.paths import AppPaths
from app.services.secrets import SecretStore
from app.services.tasks import OwnedTasks
from app.services.tunnel import TunnelRunner, TunnelStatus, download_cloudflared, find_cloudflared
from app.ui.config_keeper import ConfigKeeper
from app.ui.fleet_control import Asker

log = logging.getLogger(__name__)
STOPPED = (TunnelState.STOPPED, TunnelState.FAILED)


class TunnelControl:
    def __init__(
        self,
        paths: AppPaths,
        keeper: ConfigKeeper,
        asker: Asker,
        secrets: SecretStore | None = None,
    ) -> None:
        self._paths = paths
        self._keeper = keeper
        self.asker = asker
        self.secrets = secrets or SecretStore()
        self._runners: dict[str, TunnelRunner] = {}
        self._listeners: list[Callable[[TunnelStatus], None]] = []
        self._tasks = OwnedTasks(lambda what, exc: self._error(f"{what} failed: {exc}"))
        self.master = self.runner(MASTER)

    @property
    def config(self) -> FleetConfig:
        return self._keeper.config

    def on_status(self, listener: Callable[[TunnelStatus], None]) -> None:
        """Every tunnel's news (its status says which target it is for)."""
        self._listeners.append(listener)
        for runner in self._runners.values():
            runner.on_status(listener)

    def runner(self, target: str) -> TunnelRunner:
        """The master's tunnel, or one for a local worker (their own state and log files)."""
        runner = self._runners.get(target)
        if runner is None:
            suffix = "" if target == MASTER else f"-{file_stem(target)}"
            runner = TunnelRunner(
                self._paths.state_dir / f"tunnel{suffix}.json",
                self._paths.log_dir / f"tunnel{suffix}.log",
                self.config.master.url,
            )
            for listener in self._listeners:
                runner.on_status(listener)
            self._runners[target] = runner
        return runner

    def running(self, target: str = MASTER) -> bool:
        runner = self._runners.get(target)
        return runner is not None and runner.status.state not in STOPPED

    def local_workers(self) -> list[str]:
        return [w.name for w in self.config.workers if w.kind is WorkerKind.LOCAL]

    def toggle(self) -> None:
        """One click: the master's last kind of tunnel (quick the first time), or stop it."""
        if self.running():
            self._tasks.spawn(self.master.stop(), "stopping the tunnel")
        else:
            self.start(self.master.status.name)

    def start(self, name: str = "quick", target: str = MASTER) -> None:
        if self.running(target):
            self._error(f"A tunnel for {target} is already running: stop it first.")
            return
        self._tasks.spawn(self._start(name, target), f"starting the tunnel for {target}")

    def stop(self, target: str) -> None:
        if self.running(target):
            self._tasks.spawn(self.runner(target).stop(), f"stopping the tunnel for {target}")

    def use_cloudflared(self, path: Path) -> bool:
        """An existing cloudflared the user pointed at."""
        tunnel = dataclasses.replace(self.config.tunnel, cloudflared_path=str(path))
        return self._keeper.apply(dataclasses.replace(self.config, tunnel=tunnel))

    def _error(self, text: str) -> None:
        log.warning("%s", text)
        self.asker.tell(text)

    def _named(self, name: str) -> tuple[str, str] | None:
        """A named tunnel's hostname and token, or None (after saying why)."""
        named = next((t for t in self.config.tunnel.named if t.name == name), None)
        if named is None:
            self._error(f"There is no named tunnel {name!r} any more.")
            return None
        try:
            token = self.secrets.get(token_key(name))
        except ComfyFleetError as exc:
            self._error(f"Cannot read the token of tunnel {name}: {exc}")
            return None
        if not token:
            self._error(f"No token is stored for tunnel {name}: add it again with its token.")
            return None
        return named.hostname, token

    async def _start(self, name: str, target: str) -> None:
        settings = self.config.tunnel
        if settings.confirm_exposure:
            if not await self.asker.confirm(EXPOSURE):
                return
            tunnel = dataclasses.replace(settings, confirm_exposure=False)  # asked once
            self._keeper.apply(dataclasses.replace(self.config, tunnel=tunnel))
        hostname = token = None
        if name != "quick":
            found = self._named(name)
            if found is None:
                return
            hostname, token = found
        try:
            binary = find_cloudflared(settings.cloudflared_path, self._paths.data_dir)
        except ComfyFleetError as exc:
            self._error(f"The tunnel cannot start: {exc}")
            return
        if binary is None:
            binary = await self._offer_download()
            if binary is None:
                return
        port = self._port(target)
        if port is None:
            self._error(f"{target} is not a local worker: only those can be tunnelled from here.")
            return
        runner = self.runner(target)
        runner.master_url = self.config.master.url
        try:
            await runner.start(
                binary, port, settings.use_http2, name, hostname, token, target=target
            )
        except ComfyFleetError as exc:
            self._error(f"The tunnel did not come up: {exc}")

    def _port(self, target: str) -> int | None:
        if target == MASTER:
            return self.config.master.port
        worker = self.config.worker(target)
        return worker.port if worker and worker.kind is WorkerKind.LOCAL else None

    async def _offer_download(self) -> Path | None:
        """cloudflared is missing: explain, and download the pinned release if the user agrees."""
        try:
            asset = release_asset(platform.system(), platform.machine())
        except ValueError as exc:
            self._error(f"cloudflared is not installed, and {exc}: install it, then try again.")
            return None
        checksum = PINNED_SHA256.get(asset.name)
        where = f"the settings, PATH and {self._paths.data_dir / 'bin'}"
        if checksum is None:
            self._error(
                f"cloudflared is not installed (looked in {where}). Install it from "
                "Cloudflare's releases or your package manager, or choose it with "
                "Tunnel ▸ Use an existing cloudflared…, then try again."
            )
            return None
        base = self.config.tunnel.download_base_url
        question = (
            f"cloudflared is not installed (looked in {where}).\n\nDownload cloudflared "
            f"{PINNED_VERSION} ({asset.name}) from {base}? It runs only if its SHA-256 matches. "
            "(No: choose one you have with Tunnel ▸ Use an existing cloudflared…)"
        )
        if not await self.asker.confirm(question):  # (No is the default)
            return None
        try:
            return await download_cloudflared(
                base, PINNED_VERSION, asset, checksum, self._paths.data_dir
            )
        except (ComfyFleetError, OSError, aiohttp.ClientError) as exc:
            self._error(f"cloudflared was not installed: {exc}")
            return None

    async def shutdown(self) -> None:
        """Stop every tunnel this app started (the master's host is restored)."""
        await self._tasks.cancel_all()
        for target, runner in self._runners.items():
            if self.running(target):
                await runner.stop()
