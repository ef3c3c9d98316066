"""ComfyUI-Distributed's `gpu_config.json` read into ComfyFleet's typed config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from app.core.config import (
    DEFAULT_MASTER_PORT,
    FleetConfig,
    MasterConfig,
    WorkerConfig,
    WorkerKind,
    validate_config,
)
from app.core.errors import ConfigError
from app.core.net import is_loopback, split_args


@dataclass(frozen=True)
class ImportResult:
    config: FleetConfig
    added: tuple[str, ...]
    updated: tuple[str, ...]


def merge_distributed_config(
    current: FleetConfig, data: Any, comfyui_dir: str | None = None
) -> ImportResult:
    """Merge a gpu_config.json document into `current`: workers match by name."""
    if not isinstance(data, dict):
        raise ConfigError("gpu_config.json", "expected a JSON object with master and workers")
    master = _master(current.master, data.get("master") or {}, comfyui_dir)
    workers = list(current.workers)
    added: list[str] = []
    updated: list[str] = []
    raw_workers = data.get("workers") or []
    if not isinstance(raw_workers, list):
        raise ConfigError("workers", "expected a list")
    for index, raw in enumerate(raw_workers):
        worker = _worker(raw, f"workers[{index}]")
        existing = next(
            (i for i, w in enumerate(workers) if w.name.casefold() == worker.name.casefold()),
            None,
        )
        if existing is None:
            workers.append(worker)
            added.append(worker.name)
        else:
            workers[existing] = worker
            updated.append(worker.name)
    config = dataclasses.replace(current, master=master, workers=tuple(workers))
    validate_config(config)
    return ImportResult(config, tuple(added), tuple(updated))


def _master(current: MasterConfig, raw: Any, comfyui_dir: str | None) -> MasterConfig:
    if not isinstance(raw, dict):
        raise ConfigError("master", "expected an object")
    port = raw.get("port") or current.port or DEFAULT_MASTER_PORT
    changes: dict[str, Any] = {"port": _int(port, "master.port")}
    if "cuda_device" in raw:
        changes["gpu"] = _gpu(raw["cuda_device"])
    if raw.get("extra_args"):
        changes["extra_args"] = split_args(str(raw["extra_args"]), "master.extra_args")
    if comfyui_dir is not None:
        changes["comfyui_dir"] = comfyui_dir
    return dataclasses.replace(current, **changes)


def _worker(raw: Any, path: str) -> WorkerConfig:
    if not isinstance(raw, dict):
        raise ConfigError(path, "expected an object")
    name = str(raw.get("name") or f"worker-{raw.get('port', '')}").strip()
    host = str(raw.get("host") or "127.0.0.1")
    kind = _kind(raw.get("type"), host, path)
    port = _int(raw.get("port", 443 if kind is WorkerKind.CLOUD else 0), f"{path}.port")
    local = kind is WorkerKind.LOCAL
    return WorkerConfig(
        name=name,
        kind=kind,
        host="127.0.0.1" if local else host,
        port=port,
        gpu=_gpu(raw.get("cuda_device")) if local else None,
        extra_args=split_args(str(raw.get("extra_args") or ""), f"{path}.extra_args")
        if local
        else (),
        enabled=bool(raw.get("enabled", True)),
        distributed_id=str(raw.get("id", "")),
    )


def _kind(value: Any, host: str, path: str) -> WorkerKind:
    if value is None:
        return WorkerKind.LOCAL if is_loopback(host) else WorkerKind.REMOTE
    try:
        return WorkerKind(str(value))
    except ValueError:
        raise ConfigError(f"{path}.type", f"{value!r} is not local, remote or cloud") from None


def _gpu(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(path, f"expected a number, found {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(path, f"expected a number, found {value!r}") from None
