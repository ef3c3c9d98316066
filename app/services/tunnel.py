"""cloudflared tunnels that are really up: started without a shell, ready only when its own
metrics server says so, the master's host set and restored through ComfyUI-Distributed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from app.core.codec import parse_json
from app.core.errors import ComfyFleetError
from app.core.tunnel import (
    ADVICE,
    ReleaseAsset,
    TunnelFailure,
    TunnelState,
    classify_failure,
    named_tunnel_argv,
    quick_tunnel_argv,
    release_url,
    url_from_banner,
)
from app.services.processes import (
    ProcessId,
    interrupt,
    kill_tree,
    listens_on,
    os_free_port,
    spawn,
)
from app.services.storage import atomic_write_text
from app.services.supervisor import rotate_logs

log = logging.getLogger(__name__)
EXE = "cloudflared.exe" if os.name == "nt" else "cloudflared"


class TunnelError(ComfyFleetError):
    def __init__(self, failure: TunnelFailure, detail: str = "") -> None:
        super().__init__(f"{failure.value}: {ADVICE[failure]}" + (f"\n{detail}" if detail else ""))
        self.failure = failure


class CloudflaredUnusable(ComfyFleetError):
    """A cloudflared was found but cannot be run; the message says what is wrong with it."""


def find_cloudflared(configured: str | None, data_dir: Path) -> Path | None:
    """The configured path, then PATH, then the app's data folder; None when there is none.
    A cloudflared that is there but cannot run raises CloudflaredUnusable."""
    if configured:
        return _runnable(Path(configured).expanduser(), "the configured cloudflared")
    on_path = shutil.which("cloudflared")
    if on_path:
        return Path(on_path)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder or ".") / EXE
        if candidate.is_file():  # which() skipped it: it cannot be executed
            return _runnable(candidate, "cloudflared on PATH")
    bundled = data_dir / "bin" / EXE
    return _runnable(bundled, "the downloaded cloudflared") if bundled.exists() else None


def _runnable(path: Path, what: str) -> Path:
    if not path.exists():
        raise CloudflaredUnusable(f"{what} ({path}) does not exist: fix the path in the settings")
    if path.is_dir():
        raise CloudflaredUnusable(f"{what} ({path}) is a folder, not the cloudflared program")
    if not os.access(path, os.X_OK):
        raise CloudflaredUnusable(
            f"{what} ({path}) is not executable: make it so (chmod +x {path}) or choose another"
        )
    return path


async def download_cloudflared(
    base_url: str, version: str, asset: ReleaseAsset, expected_sha256: str | None, data_dir: Path
) -> Path:
    """Fetch the pinned release, check its SHA-256, and only then make it executable."""
    if not expected_sha256:
        raise ComfyFleetError(
            f"No pinned checksum for {asset.name} {version}: refusing to "
            "install a binary that cannot be verified."
        )
    if asset.archive:
        raise ComfyFleetError("macOS releases come as .tgz: install cloudflared with Homebrew")
    target = data_dir / "bin" / EXE
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    url = release_url(base_url, version, asset)
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session,
        session.get(url) as response,
    ):
        if response.status != 200:
            raise ComfyFleetError(f"Download of {url} failed: HTTP {response.status}")
        with partial.open("wb") as handle:
            async for chunk in response.content.iter_chunked(1 << 16):
                digest.update(chunk)
                handle.write(chunk)
    if digest.hexdigest() != expected_sha256.lower():
        partial.unlink(missing_ok=True)
        raise ComfyFleetError(
            f"Checksum mismatch for {asset.name}: expected {expected_sha256}, "
            f"got {digest.hexdigest()}. The file was deleted."
        )
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)
    return target


@dataclass(frozen=True)
class TunnelStatus:
    state: TunnelState
    name: str = "quick"
    target: str = "master"  # what it exposes: the master, or a local worker by name
    url: str | None = None
    pid: int | None = None
    create_time: float | None = None
    owner_pid: int | None = None
    previous_host: str | None = None
    master_note: str = ""
    error: str | None = None
    started_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


def read_tunnel_state(path: Path) -> TunnelStatus | None:
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
        data["state"] = TunnelState(data["state"])
        return TunnelStatus(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class TunnelRunner:
    """One tunnel at a time for the master (the common case)."""

    def __init__(
        self,
        state_file: Path,
        log_file: Path,
        master_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_file = state_file
        self.log_file = log_file
        self.master_url = master_url.rstrip("/")
        self._clock = clock
        self.status = TunnelStatus(TunnelState.STOPPED)
        self._listeners: list[Callable[[TunnelStatus], None]] = []
        self._process: ProcessId | None = None
        self._session: aiohttp.ClientSession | None = None

    def on_status(self, listener: Callable[[TunnelStatus], None]) -> None:
        self._listeners.append(listener)

    def _set(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)
        atomic_write_text(self.state_file, json.dumps(self.status.as_json(), indent=2))
        for listener in self._listeners:
            listener(self.status)

    def lines(self) -> list[str]:
        try:
            return self.log_file.read_text("utf-8", "replace").splitlines()
        except OSError:
            return []

    async def start(
        self,
        binary: Path | None,
        port: int,
        http2: bool = False,
        name: str = "quick",
        hostname: str | None = None,
        token: str | None = None,
        timeout_s: float = 60.0,
        target: str = "master",
    ) -> TunnelStatus:
        """Start and wait until cloudflared's /ready answers 200; raises TunnelError.

        Only a tunnel for the master changes ComfyUI-Distributed's master host.
        """
        if binary is None:
            raise TunnelError(TunnelFailure.BINARY_MISSING)
        metrics = os_free_port()  # never cloudflared's default, never another start's
        env: dict[str, str] = {}
        if name == "quick":
            argv = quick_tunnel_argv(str(binary), port, metrics, http2)
        else:
            if not token:
                raise ComfyFleetError(
                    f"No token stored for tunnel {name}: run comfy-fleet tunnel set-token {name}"
                )
            argv = named_tunnel_argv(str(binary), metrics, http2)
            env["TUNNEL_TOKEN"] = token  # the environment, never argv, config or logs
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        rotate_logs(self.log_file)  # kept like an instance's: one file per start, last five
        process = spawn(argv, str(self.log_file.parent), env, self.log_file)
        self._process = ProcessId.of(process.pid)
        self._set(
            state=TunnelState.STARTING,
            name=name,
            target=target,
            url=None,
            pid=process.pid,
            create_time=self._process.create_time if self._process else None,
            owner_pid=os.getpid(),
            error=None,
            started_at=self._clock(),
            master_note="",
        )
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        try:
            url = await self._wait_ready(process, metrics, hostname, timeout_s)
        except TunnelError as exc:
            self._set(state=TunnelState.FAILED, error=str(exc), pid=None)
            await self._terminate()
            await self._close_session()  # no "Unclosed client session" after a failed start
            raise
        self._set(state=TunnelState.READY, url=url)
        if target == "master":
            await self._point_master_at(url)
        return self.status

    async def _wait_ready(
        self, process: Any, port: int, hostname: str | None, timeout_s: float
    ) -> str:
        """The tunnel's URL once cloudflared says it is connected. Its metrics are read only
        once that port is seen to be this cloudflared's own (another program's answers, a
        second tunnel's URL, never count)."""
        deadline = self._clock() + timeout_s
        url = f"https://{hostname}" if hostname else None
        metrics, owned = f"http://127.0.0.1:{port}", False
        while self._clock() < deadline:
            if process.poll() is not None:
                lines = self.lines()
                raise TunnelError(classify_failure(lines), "\n".join(lines[-8:]))
            owned = owned or listens_on(process.pid, port)
            if not owned:
                await asyncio.sleep(0.05)
                continue
            if url is None:
                url = await self._quicktunnel(metrics) or url_from_banner(self.lines())
                if url:
                    self._set(state=TunnelState.URL_KNOWN, url=url)
            if url and await self._ready(metrics):
                return url
            await asyncio.sleep(0.05)
        lines = self.lines()
        failure = classify_failure(lines)
        if failure is TunnelFailure.EXITED:  # it runs: it never connected
            failure = TunnelFailure.NEVER_CONNECTED
        detail = "\n".join([f"not connected after {timeout_s:g} s", *lines[-6:]])
        raise TunnelError(failure, detail)

    async def _quicktunnel(self, metrics: str) -> str | None:
        assert self._session is not None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with self._session.get(f"{metrics}/quicktunnel") as response:
                if response.status == 200:
                    hostname = (await response.json(content_type=None)).get("hostname")
                    if hostname:
                        return f"https://{hostname}"
        return None

    async def _ready(self, metrics: str) -> bool:
        assert self._session is not None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._session.get(f"{metrics}/ready") as response:
                return response.status == 200
        return False

    async def _point_master_at(self, url: str) -> None:
        """Workers call back to master.host: set it to the tunnel, remember the old one."""
        assert self._session is not None
        host = url.removeprefix("https://")
        try:
            async with self._session.get(f"{self.master_url}/distributed/config") as response:
                if response.status != 200:
                    raise ValueError(response.status)
                previous = (await response.json()).get("master", {}).get("host", "")
            async with self._session.post(
                f"{self.master_url}/distributed/config/update_master", json={"host": host}
            ) as response:
                response.raise_for_status()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self._set(
                master_note="The master has no ComfyUI-Distributed extension (or does not "
                "answer): its host was not changed; the tunnel stays up."
            )
            return
        self._set(previous_host=previous, master_note=f"master host set to {host}")

    async def _restore_master(self) -> None:
        if self.status.previous_host is None or self._session is None:
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._session.post(
                f"{self.master_url}/distributed/config/update_master",
                json={"host": self.status.previous_host},
            ) as response:
                response.raise_for_status()
                self._set(
                    master_note=f"master host restored to '{self.status.previous_host}'",
                    previous_host=None,
                )

    async def stop(self, timeout_s: float = 8.0) -> None:
        await self._restore_master()
        await self._terminate(timeout_s)
        self._set(state=TunnelState.STOPPED, pid=None)
        await self._close_session()

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _terminate(self, timeout_s: float = 8.0) -> None:
        process = self._process.alive() if self._process else None
        if process is None:
            return
        interrupt(process)  # cloudflared waits --grace-period (5 s), then exits
        try:
            await asyncio.to_thread(process.wait, timeout_s)
        except psutil.TimeoutExpired:
            kill_tree(process)
