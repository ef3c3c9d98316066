"""The typed fleet configuration: every default lives here, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from app.core.cloud import CloudSettings
from app.core.errors import ConfigError
from app.core.net import CLOUD_HTTPS_PORT, base_url, is_loopback, validate_host
from app.core.queue_url import QueueUrlError, check_queue_url

SCHEMA_VERSION = 1
LOOPBACK = "127.0.0.1"
DEFAULT_MASTER_PORT = 8188
FIRST_WORKER_PORT = 8189  # ComfyUI-Distributed numbers its local workers from here
CLOUD_PORT = CLOUD_HTTPS_PORT
MAX_NAME_LENGTH = 64
MASTER = "master"  # the master's name in the table, the logs and the CLI
RESERVED_NAMES = frozenset({MASTER})
THEMES = ("system", "light", "dark")

_GPU_SPEC = re.compile(r"^(cpu|\d{1,3}|(GPU|MIG)-[0-9A-Fa-f-]{8,})$")


class Notice(StrEnum):
    """The events a desktop notification can be turned on or off for."""

    CRASH = "crash"
    RESTART = "restart"
    TUNNEL_READY = "tunnel_ready"
    RUN_FINISHED = "run_finished"
    WORKER_DOWN = "worker_down"  # a remote or cloud worker (a local one's crash is CRASH)
    WORKER_UP = "worker_up"


class WorkerKind(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"
    CLOUD = "cloud"


@dataclass(frozen=True)
class MasterConfig:
    """The ComfyUI that runs ComfyUI-Distributed's orchestration.

    Without `comfyui_dir` the master is an already-running ComfyUI (ComfyUI Desktop, another
    machine) that ComfyFleet connects to but never launches.
    """

    comfyui_dir: str | None = None
    python: str | None = None
    host: str = LOOPBACK
    port: int = DEFAULT_MASTER_PORT
    listen: str | None = None
    extra_args: tuple[str, ...] = ()
    gpu: str | None = None

    @property
    def launched_by_app(self) -> bool:
        return self.comfyui_dir is not None

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)


@dataclass(frozen=True)
class WorkerConfig:
    name: str
    kind: WorkerKind
    host: str = LOOPBACK
    port: int = FIRST_WORKER_PORT
    gpu: str | None = None
    extra_args: tuple[str, ...] = ()
    listen: str | None = None
    enabled: bool = True
    distributed_id: str = ""  # the id ComfyUI-Distributed knows this worker by

    @property
    def url(self) -> str:
        """https://HOST for cloud workers, else http://HOST:PORT (ComfyUI-Distributed's rules)."""
        return base_url(self.host, self.port, self.kind is WorkerKind.CLOUD)


@dataclass(frozen=True)
class NamedTunnel:
    name: str
    hostname: str


@dataclass(frozen=True)
class TunnelSettings:
    cloudflared_path: str | None = None
    use_http2: bool = False
    confirm_exposure: bool = True
    download_base_url: str = "https://github.com/cloudflare/cloudflared/releases/download"
    named: tuple[NamedTunnel, ...] = ()


@dataclass(frozen=True)
class AppSettings:
    poll_interval_s: float = 2.0
    busy_poll_interval_s: float = 1.0
    offline_backoff_max_s: float = 30.0
    ready_timeout_s: float = 120.0
    crash_loop_exits: int = 5
    crash_loop_window_s: float = 600.0
    start_at_login: bool = False
    start_fleet_on_launch: bool = False
    minimize_to_tray: bool = True  # closing the window hides it while a tray exists
    notify_crash: bool = True
    notify_restart: bool = True
    notify_tunnel_ready: bool = True
    notify_run_finished: bool = True
    notify_worker_down: bool = True
    notify_worker_up: bool = True
    theme: str = "system"  # or "light" / "dark": "system" follows the desktop's scheme
    queue_url: str | None = None  # a PostgreSQL server shared by a team; None: the local file

    def notifies(self, event: Notice) -> bool:
        return bool(getattr(self, f"notify_{event.value}"))


@dataclass(frozen=True)
class FleetConfig:
    master: MasterConfig = field(default_factory=MasterConfig)
    workers: tuple[WorkerConfig, ...] = ()
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    app: AppSettings = field(default_factory=AppSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    schema_version: int = SCHEMA_VERSION

    def worker(self, name: str) -> WorkerConfig | None:
        return next((w for w in self.workers if w.name.casefold() == name.casefold()), None)

    def next_free_local_port(self) -> int:
        taken = {w.port for w in self.workers if w.kind is WorkerKind.LOCAL}
        taken.add(self.master.port)
        port = FIRST_WORKER_PORT
        while port in taken:
            port += 1
        return port


def validate_port(value: int, field_name: str = "port") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(field_name, f"{value!r} is not a port number (1-65535)")


def validate_gpu(value: str | None, field_name: str = "gpu") -> None:
    if value is not None and not _GPU_SPEC.match(value):
        raise ConfigError(
            field_name, f"{value!r} is not a GPU: use an index (0), a UUID (GPU-…) or 'cpu'"
        )


def validate_name(name: str, field_name: str = "name") -> None:
    if not name.strip():
        raise ConfigError(field_name, "a worker needs a name")
    if name != name.strip():
        raise ConfigError(field_name, f"{name!r} starts or ends with spaces")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(field_name, f"names are at most {MAX_NAME_LENGTH} characters")
    if any(not ch.isprintable() for ch in name):
        raise ConfigError(field_name, f"{name!r} contains control characters")
    if name.casefold() in RESERVED_NAMES:
        raise ConfigError(field_name, f"{name!r} is reserved for the master")


def validate_master(master: MasterConfig) -> None:
    validate_host(master.host, "master.host")
    validate_port(master.port, "master.port")
    if master.listen is not None:
        validate_host(master.listen, "master.listen")
    validate_gpu(master.gpu, "master.gpu")


def validate_worker(worker: WorkerConfig) -> None:
    prefix = f"worker {worker.name!r}"
    validate_name(worker.name)
    validate_host(worker.host, f"{prefix} host")
    validate_port(worker.port, f"{prefix} port")
    validate_gpu(worker.gpu, f"{prefix} gpu")
    if worker.listen is not None:
        validate_host(worker.listen, f"{prefix} listen")
    if worker.kind is WorkerKind.LOCAL and not is_loopback(worker.host):
        raise ConfigError(f"{prefix} host", "a local worker runs on this machine: use 127.0.0.1")
    if worker.kind is not WorkerKind.LOCAL and (worker.gpu is not None or worker.extra_args):
        raise ConfigError(
            f"{prefix} gpu", "GPU and extra args are set on the machine that runs the worker"
        )


def validate_config(config: FleetConfig) -> None:
    """Raise ConfigError naming the first invalid field."""
    validate_master(config.master)
    seen_names: set[str] = set()
    local_ports: dict[int, str] = {}
    if is_loopback(config.master.host):
        local_ports[config.master.port] = "the master"
    for worker in config.workers:
        validate_worker(worker)
        key = worker.name.casefold()
        if key in seen_names:
            raise ConfigError("name", f"two workers are called {worker.name!r}")
        seen_names.add(key)
        if worker.kind is WorkerKind.LOCAL:
            holder = local_ports.get(worker.port)
            if holder is not None:
                raise ConfigError(
                    f"worker {worker.name!r} port", f"port {worker.port} is already {holder}'s"
                )
            local_ports[worker.port] = f"worker {worker.name!r}"
    for tunnel in config.tunnel.named:
        validate_host(tunnel.hostname, f"tunnel {tunnel.name!r} hostname")
    if config.app.queue_url is not None:
        try:
            check_queue_url(config.app.queue_url, "app.queue_url")
        except QueueUrlError as exc:
            raise ConfigError("app.queue_url", str(exc).split(": ", 1)[1]) from None
    if config.app.theme not in THEMES:
        raise ConfigError("app.theme", f"{config.app.theme!r} is not one of {', '.join(THEMES)}")
    if config.app.poll_interval_s <= 0 or config.app.ready_timeout_s <= 0:
        raise ConfigError("app", "intervals and timeouts must be positive")
