"""`config`, `master` and `worker`: the fleet's settings from a terminal."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from app.cli.common import EXIT_OK, UsageError, load_config, read_text_file
from app.core.codec import parse_json, to_data
from app.core.config import (
    CLOUD_PORT,
    FleetConfig,
    MasterConfig,
    WorkerConfig,
    WorkerKind,
    validate_config,
)
from app.core.distributed import merge_distributed_config
from app.core.errors import ComfyFleetError, ConfigError
from app.core.net import (
    CLOUD_PORT_ONLY,
    join_args,
    normalize_host,
    parse_cloud_address,
    split_args,
)
from app.services.comfy_install import HelpReader, check_instance_args
from app.services.paths import AppPaths
from app.services.storage import ConfigStore


def add_settings_commands(commands: Any) -> None:
    _add_config_commands(commands)
    _add_master_commands(commands)
    _add_worker_commands(commands)


def _add_config_commands(commands: Any) -> None:
    config = commands.add_parser("config", help="where the config lives and what it holds")
    sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("path", help="print the config file's path")
    show = sub.add_parser("show", help="print the config")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    imp = sub.add_parser("import-distributed", help="import ComfyUI-Distributed's gpu_config.json")
    imp.add_argument("file", type=Path, metavar="FILE")


def _add_master_commands(commands: Any) -> None:
    master = commands.add_parser("master", help="the ComfyUI master")
    sub = master.add_subparsers(dest="action", metavar="ACTION", required=True)
    edit = sub.add_parser("set", help="change the master's settings")
    edit.add_argument(
        "--comfyui", metavar="DIR", help="ComfyUI folder to launch ('' = connect only)"
    )
    edit.add_argument("--python", metavar="EXE", help="Python that runs ComfyUI")
    edit.add_argument("--host", metavar="H", help="where ComfyFleet reaches the master")
    edit.add_argument("--port", type=int, metavar="N")
    edit.add_argument("--listen", metavar="ADDR", help="address to listen on (default 127.0.0.1)")
    edit.add_argument("--extra-args", metavar='"…"', help="extra ComfyUI arguments")
    edit.add_argument("--gpu", metavar="UUID|INDEX|cpu")


def _add_worker_commands(commands: Any) -> None:
    worker = commands.add_parser("worker", help="local, remote and cloud workers")
    sub = worker.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a worker")
    add.add_argument("kind", choices=[k.value for k in WorkerKind])
    add.add_argument("--name", required=True)
    _worker_options(add)
    edit = sub.add_parser("edit", help="change a worker")
    edit.add_argument("name")
    edit.add_argument("--name", dest="new_name", metavar="NEW_NAME")
    _worker_options(edit)
    remove = sub.add_parser("remove", help="remove a worker")
    remove.add_argument("name")
    listing = sub.add_parser("list", help="list the workers")
    listing.add_argument("--json", action="store_true")


def _worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="host name or IP; for cloud also a URL or a Runpod pod id")
    parser.add_argument("--port", type=int)
    parser.add_argument("--gpu", metavar="UUID|INDEX|cpu", help="local workers only")
    parser.add_argument("--extra-args", metavar='"…"', help="local workers only")
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false")


def config_command(args: argparse.Namespace, paths: AppPaths) -> int:
    if args.action == "path":
        print(paths.config_file)
        return EXIT_OK
    store, config = load_config(paths)
    if args.action == "show":
        print(json.dumps(to_data(config), indent=2) if args.json else describe_config(config))
        return EXIT_OK
    try:
        data = parse_json(read_text_file(args.file, "ComfyUI-Distributed's gpu_config.json"))
    except ComfyFleetError as exc:
        raise UsageError(f"FILE: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"FILE: {args.file} is not JSON (line {exc.lineno})") from None
    except ValueError as exc:
        raise UsageError(f"FILE: {args.file}: {exc}") from None
    result = merge_distributed_config(config, data, _install_dir_of(args.file))
    store.save(result.config)
    print(f"Imported {args.file}: {len(result.added)} added, {len(result.updated)} updated.")
    return EXIT_OK


def _install_dir_of(gpu_config: Path) -> str | None:
    """gpu_config.json sits in <ComfyUI>/custom_nodes/ComfyUI-Distributed/."""
    parents = gpu_config.resolve().parents
    if len(parents) > 2 and (parents[2] / "main.py").is_file():
        return str(parents[2])
    return None


def master_command(args: argparse.Namespace, paths: AppPaths) -> int:
    store, config = load_config(paths)
    changes: dict[str, Any] = {}
    if args.comfyui is not None:
        changes["comfyui_dir"] = _existing_comfyui(args.comfyui)
    if args.host is not None:
        args.host = normalize_host(args.host)
    for name in ("python", "host", "port", "listen", "gpu"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value or None if name in ("python", "listen", "gpu") else value
    if args.extra_args is not None:
        changes["extra_args"] = split_args(args.extra_args, "extra-args")
    master = dataclasses.replace(config.master, **changes)
    _save(store, dataclasses.replace(config, master=master), "master")
    print(describe_master(master))
    return EXIT_OK


def _existing_comfyui(text: str) -> str | None:
    if not text:
        return None
    folder = Path(text).expanduser().absolute()
    if not (folder / "main.py").is_file():
        raise ConfigError("comfyui", f"{folder} has no main.py: is it a ComfyUI folder?")
    return str(folder)


def worker_command(args: argparse.Namespace, paths: AppPaths) -> int:
    store, config = load_config(paths)
    if args.action == "list":
        if args.json:
            print(json.dumps([_worker_json(w) for w in config.workers], indent=2))
        else:
            print(describe_workers(config))
        return EXIT_OK
    if args.action == "add":
        new = WorkerConfig(args.name.strip(), WorkerKind(args.kind))
        worker = _apply_options(new, args, config)
        if config.worker(worker.name):
            raise ConfigError("name", f"a worker called {worker.name!r} exists already")
        _save(store, dataclasses.replace(config, workers=(*config.workers, worker)), worker.name)
        print(f"Added {describe_worker(worker)}")
        return EXIT_OK
    current = config.worker(args.name.strip())
    if current is None:
        raise UsageError(f"name: no worker is called {args.name!r}")
    others = tuple(w for w in config.workers if w is not current)
    if args.action == "remove":
        _save(store, dataclasses.replace(config, workers=others))
        print(f"Removed worker {current.name}")
        return EXIT_OK
    worker = _apply_options(current, args, config)
    if args.new_name:
        worker = dataclasses.replace(worker, name=args.new_name.strip())
    workers = tuple(worker if w is current else w for w in config.workers)
    _save(store, dataclasses.replace(config, workers=workers), worker.name)
    print(f"Updated {describe_worker(worker)}")
    return EXIT_OK


def _apply_options(
    worker: WorkerConfig, args: argparse.Namespace, config: FleetConfig
) -> WorkerConfig:
    changes: dict[str, Any] = {}
    if args.host is not None:
        if worker.kind is WorkerKind.CLOUD:
            changes["host"], changes["port"] = parse_cloud_address(args.host)
        else:
            changes["host"] = normalize_host(args.host)
    if args.port is not None:
        if worker.kind is WorkerKind.CLOUD and args.port != CLOUD_PORT:
            raise ConfigError("port", CLOUD_PORT_ONLY.format(address=f"port {args.port}"))
        changes["port"] = args.port
    elif args.action == "add":
        changes.setdefault("port", _default_port(worker.kind, config))
    if args.gpu is not None:
        changes["gpu"] = args.gpu or None
    if args.extra_args is not None:
        changes["extra_args"] = split_args(args.extra_args, "extra-args")
    if args.enabled is not None:
        changes["enabled"] = args.enabled
    if args.action == "add" and worker.kind is not WorkerKind.LOCAL and "host" not in changes:
        raise UsageError(f"host: a {worker.kind.value} worker needs --host")
    return dataclasses.replace(worker, **changes)


def _default_port(kind: WorkerKind, config: FleetConfig) -> int:
    if kind is WorkerKind.CLOUD:
        return CLOUD_PORT
    if kind is WorkerKind.REMOTE:
        return 8188
    return config.next_free_local_port()


def _save(store: ConfigStore, config: FleetConfig, changed: str | None = None) -> None:
    """Validate, check the changed instance's extra args against the install, save."""
    validate_config(config)
    if changed is not None:
        check_instance_args(config, changed, HelpReader())
    store.save(config)


def _worker_json(worker: WorkerConfig) -> dict[str, Any]:
    data: dict[str, Any] = to_data(worker)
    data["url"] = worker.url
    return data


def describe_master(master: MasterConfig) -> str:
    where = master.url
    if not master.launched_by_app:
        return f"master: {where} (already running; ComfyFleet connects, does not launch)"
    extra = f" {join_args(master.extra_args)}" if master.extra_args else ""
    gpu = master.gpu or "auto"
    return f"master: {where} launched from {master.comfyui_dir} on GPU {gpu}{extra}"


def describe_worker(worker: WorkerConfig) -> str:
    state = "" if worker.enabled else " (disabled)"
    gpu = f" GPU {worker.gpu}" if worker.gpu else ""
    return f"{worker.kind.value} worker {worker.name}: {worker.url}{gpu}{state}"


def describe_workers(config: FleetConfig) -> str:
    if not config.workers:
        return "No workers yet. Add one with: comfy-fleet worker add local|remote|cloud --name NAME"
    return "\n".join(describe_worker(w) for w in config.workers)


def describe_config(config: FleetConfig) -> str:
    return f"{describe_master(config.master)}\n{describe_workers(config)}"
