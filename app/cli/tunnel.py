"""`comfy-fleet tunnel …`: cloudflared tunnels for the master, from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import getpass
import json
import platform
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from app.core.config import FleetConfig, NamedTunnel, WorkerKind, validate_config
from app.core.errors import ConfigError
from app.core.names import file_stem
from app.core.tunnel import EXPOSURE, PINNED_SHA256, PINNED_VERSION, release_asset, token_key
from app.services.paths import AppPaths
from app.services.processes import ProcessId, interrupt, wait_gone
from app.services.secrets import SecretStore
from app.services.storage import ConfigStore
from app.services.tunnel import (
    TunnelError,
    TunnelRunner,
    TunnelStatus,
    download_cloudflared,
    find_cloudflared,
    read_tunnel_state,
)


def add_tunnel_commands(commands: Any) -> None:
    tunnel = commands.add_parser("tunnel", help="cloudflared tunnels so cloud workers reach you")
    sub = tunnel.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = sub.add_parser("start", help="start a tunnel to the master (foreground)")
    start.add_argument("--name", help="a named tunnel (see tunnel add); default: a quick tunnel")
    start.add_argument("--http2", action="store_true", help="HTTP/2 instead of QUIC (UDP blocked)")
    start.add_argument("--yes", action="store_true", help="accept that the master is exposed")
    status = sub.add_parser("status", help="the running tunnel, from any process")
    status.add_argument("--json", action="store_true")
    stop = sub.add_parser("stop", help="stop the running tunnel (its host change is undone)")
    for parser in (start, status, stop):
        parser.add_argument(
            "--for", dest="target", metavar="WORKER", help="a local worker instead of the master"
        )
    add = sub.add_parser("add", help="add a named tunnel")
    add.add_argument("name")
    add.add_argument("--hostname", required=True, help="its public hostname")
    token = sub.add_parser("set-token", help="store a named tunnel's token in the keyring")
    token.add_argument("name")
    install = sub.add_parser("install", help="download the pinned cloudflared, SHA-256 checked")
    install.add_argument("--sha256", help="the expected checksum (default: the pinned one)")


def tunnel_command(
    args: argparse.Namespace, paths: AppPaths, store: ConfigStore, config: FleetConfig
) -> int:
    target = getattr(args, "target", None)
    state_file = paths.state_dir / (f"tunnel-{file_stem(target)}.json" if target else "tunnel.json")
    if args.action == "status":
        return _status(state_file, args.json)
    if args.action == "stop":
        return _stop(state_file)
    if args.action == "add":
        named = (
            *[t for t in config.tunnel.named if t.name != args.name],
            NamedTunnel(args.name, args.hostname),
        )
        updated = dataclasses.replace(
            config, tunnel=dataclasses.replace(config.tunnel, named=named)
        )
        validate_config(updated)
        store.save(updated)
        print(
            f"Added named tunnel {args.name} ({args.hostname}); "
            f"now store its token: comfy-fleet tunnel set-token {args.name}"
        )
        return 0
    if args.action == "set-token":
        return _set_token(args.name)
    if args.action == "install":
        asset = release_asset(platform.system(), platform.machine())
        checksum = args.sha256 or PINNED_SHA256.get(asset.name)
        path = asyncio.run(
            download_cloudflared(
                config.tunnel.download_base_url, PINNED_VERSION, asset, checksum, paths.data_dir
            )
        )
        print(f"Installed cloudflared {PINNED_VERSION} at {path} (SHA-256 verified)")
        return 0
    return _start(args, paths, store, config, state_file)


def _set_token(name: str) -> int:
    if sys.stdin.isatty():
        token = getpass.getpass(f"Token for tunnel {name} (hidden): ")
    else:
        token = sys.stdin.readline().strip()
    SecretStore().set(token_key(name), token)
    print(f"Stored the token for {name} in the system keyring.")
    return 0


def _start(
    args: argparse.Namespace,
    paths: AppPaths,
    store: ConfigStore,
    config: FleetConfig,
    state_file: Any,
) -> int:
    asking = config.tunnel.confirm_exposure and not args.yes
    if asking and (not sys.stdin.isatty() or input(f"{EXPOSURE} [y/N] ").lower() != "y"):
        print(f"{EXPOSURE}\nNot started: answer y, or pass --yes.", file=sys.stderr)
        return 2
    if config.tunnel.confirm_exposure:  # asked once; can be turned back on in the config
        store.save(
            dataclasses.replace(
                config, tunnel=dataclasses.replace(config.tunnel, confirm_exposure=False)
            )
        )
    hostname = token = None
    if args.name:
        named = next((t for t in config.tunnel.named if t.name == args.name), None)
        if named is None:
            raise ConfigError("name", f"no named tunnel {args.name!r}: add it with tunnel add")
        hostname, token = named.hostname, SecretStore().get(token_key(args.name))
    master = config.master
    port, log_name = master.port, "tunnel.log"
    if args.target:
        worker = config.worker(args.target)
        if worker is None or worker.kind is not WorkerKind.LOCAL:
            raise ConfigError("--for", f"{args.target!r} is not a local worker")
        port, log_name = worker.port, f"tunnel-{file_stem(worker.name)}.log"
    runner = TunnelRunner(state_file, paths.log_dir / log_name, master.url)
    binary = find_cloudflared(config.tunnel.cloudflared_path, paths.data_dir)
    start = functools.partial(
        runner.start,
        binary,
        port,
        args.http2 or config.tunnel.use_http2,
        args.name or "quick",
        hostname,
        token,
        target=args.target or "master",
    )
    return asyncio.run(_run(runner, start))


async def _run(runner: TunnelRunner, start: Callable[[], Awaitable[TunnelStatus]]) -> int:
    from app.cli.supervise import until_signal

    try:
        status = await start()
    except TunnelError as exc:
        print(f"comfy-fleet: tunnel failed: {exc}", file=sys.stderr)
        return 1
    print(status.url, flush=True)
    if status.master_note:
        print(status.master_note, flush=True)
    try:
        await until_signal()
    finally:
        await runner.stop()
        print(runner.status.master_note or "tunnel stopped", flush=True)
    return 0


def _status(state_file: Any, as_json: bool) -> int:
    status = read_tunnel_state(state_file)
    alive = bool(
        status
        and status.pid
        and status.create_time
        and ProcessId(status.pid, status.create_time).alive()
    )
    if (
        status is not None
        and not alive
        and status.state.value in ("starting", "url known", "ready")
    ):
        status = dataclasses.replace(status, state=type(status.state)("stopped"), pid=None)
    if as_json:
        print(json.dumps(status.as_json() if status else {"state": "stopped"}, indent=2))
    elif status is None:
        print("no tunnel")
    else:
        print(f"{status.name} tunnel: {status.state.value} {status.url or ''}".rstrip())
        if status.error:
            print(status.error)
    return 0


def _stop(state_file: Any) -> int:
    status = read_tunnel_state(state_file)
    if status is None or not status.pid or not status.create_time:
        print("no tunnel is running")
        return 0
    owner = ProcessId.of(status.owner_pid) if status.owner_pid else None
    owner_process = owner.alive() if owner else None
    if owner_process is not None:
        owner_process.terminate()  # `tunnel start` restores the master host, then exits
        wait_gone(owner_process, 15)
        print("tunnel stopped")
        return 0
    process = ProcessId(status.pid, status.create_time).alive()
    if process is not None:
        interrupt(process)
        wait_gone(process, 15)
    print("tunnel stopped")
    return 0
