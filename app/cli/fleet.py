"""Headless fleet commands: status (and, with the supervisor, up/down/logs)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from app.core.cloud import fleet_cost_per_h, money
from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError, SecretStoreError
from app.core.health import ProbeSchedule, WorkerHealth, WorkerState
from app.core.secret_sources import OUTSIDE_NAMES
from app.core.tunnel import token_key
from app.services.comfy_client import ComfyClient
from app.services.gpus import GpuReader, GpuSnapshot
from app.services.monitor import FleetMonitor, targets_from_config
from app.services.processes import ProcessId
from app.services.runpod import API_KEY, RunpodClient
from app.services.secrets import SecretStore
from app.services.supervisor import read_state


def add_status_command(commands: Any) -> None:
    status = commands.add_parser("status", help="live health of the master and every worker")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument("--watch", action="store_true", help="keep watching; print changes")


def status_command(
    args: argparse.Namespace,
    config: FleetConfig,
    state_file: Path,
    secrets: SecretStore | None = None,
) -> int:
    if args.watch:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_watch(config, args.json))
        return 0
    healths, gpus = asyncio.run(_probe_once(config))
    healths = merge_supervised(healths, read_state(state_file))
    secrets = secrets or SecretStore()
    cloud = asyncio.run(_cloud_cost(config, secrets))
    sources = secret_sources(config, secrets)
    if args.json:
        answer = {**status_json(healths, gpus), "cloud": cloud, "secrets": sources}
        print(json.dumps(answer, indent=2))
    else:
        print(format_table(healths, gpus))
        if cloud is not None:
            print(cloud["text"])
        for name, source in sources.items():
            print(f"secret {name}: {source}")
    return 0


def secret_sources(config: FleetConfig, secrets: SecretStore) -> dict[str, str]:
    """Each secret the fleet may use → where it comes from (never the secret)."""
    names = [*OUTSIDE_NAMES, *(token_key(t.name) for t in config.tunnel.named)]
    return {name: secrets.source(name) for name in names}


async def _cloud_cost(config: FleetConfig, secrets: SecretStore) -> dict[str, Any] | None:
    """The Runpod pods billing now, when a key is stored (None without one)."""
    try:
        key = secrets.get(API_KEY)
    except SecretStoreError:
        return None
    if not key:
        return None
    async with aiohttp.ClientSession() as session:
        try:
            pods = await RunpodClient(session, key, config.cloud.runpod_api_url).pods()
        except ComfyFleetError as exc:
            return {"error": str(exc), "text": f"cloud: {exc}"}
    billing = [p for p in pods if p.cost_per_h > 0]
    cost = fleet_cost_per_h(billing)
    text = f"cloud: {len(billing)} of {len(pods)} pod(s) billing, {money(cost)}/h"
    return {"pods": len(pods), "billing": len(billing), "cost_per_h": cost, "text": text}


async def _probe_once(config: FleetConfig) -> tuple[list[WorkerHealth], GpuSnapshot]:
    client = ComfyClient()
    reader = GpuReader()
    try:
        gpus = asyncio.to_thread(reader.read)
        healths = FleetMonitor(client).probe_all_once(targets_from_config(config))
        return await healths, await gpus
    finally:
        await client.close()
        reader.close()


def status_json(healths: list[WorkerHealth], gpus: GpuSnapshot) -> dict[str, Any]:
    return {
        "master": healths[0].as_json(),
        "workers": [h.as_json() for h in healths[1:]],
        "gpus": [g.as_json() for g in gpus.gpus],
        "gpu_error": gpus.error,
    }


def _gib(value: int | None) -> str:
    return "—" if value is None else f"{value / 1024**3:.1f}"


def format_row(health: WorkerHealth) -> str:
    vram = "—"
    if health.vram_total:
        vram = f"{_gib(health.vram_used)}/{_gib(health.vram_total)} GiB"
    latency = "—" if health.latency_ms is None else f"{health.latency_ms:.0f} ms"
    queue = "—" if health.queue_remaining is None else str(health.queue_remaining)
    line = (
        f"{health.name:<20} {health.kind:<7} {health.state.value:<9} {vram:>17} "
        f"q={queue:<3} {latency:>7}  {health.url}"
    )
    return f"{line}\n{'':<20} ↳ {health.error}" if health.error else line


def format_table(healths: list[WorkerHealth], gpus: GpuSnapshot) -> str:
    online = sum(h.state in (WorkerState.ONLINE, WorkerState.BUSY) for h in healths)
    enabled = sum(h.state is not WorkerState.DISABLED for h in healths)
    lines = [f"{online}/{enabled} online"] + [format_row(h) for h in healths]
    if gpus.error:
        lines.append(gpus.error)
    for gpu in gpus.gpus:
        util = "n/a" if gpu.utilization is None else f"{gpu.utilization}%"
        lines.append(
            f"GPU {gpu.index} {gpu.name}: {_gib(gpu.memory_used)}/"
            f"{_gib(gpu.memory_total)} GiB, {util}"
        )
    return "\n".join(lines)


async def _watch(config: FleetConfig, as_json: bool) -> None:
    client = ComfyClient()
    settings = config.app
    monitor = FleetMonitor(
        client,
        ProbeSchedule(
            settings.poll_interval_s, settings.busy_poll_interval_s, settings.offline_backoff_max_s
        ),
    )
    last: dict[str, WorkerState] = {}

    def changed(health: WorkerHealth) -> None:
        if last.get(health.name) is health.state:
            return
        before = last.get(health.name)
        last[health.name] = health.state
        if as_json:
            print(json.dumps({"time": time.time(), **health.as_json()}), flush=True)
            return
        arrow = f"{before.value} → " if before else ""
        reason = f" ({health.error})" if health.error else ""
        print(
            f"{time.strftime('%H:%M:%S')} {health.name}: {arrow}{health.state.value}{reason}",
            flush=True,
        )

    monitor.subscribe(changed)
    monitor.set_targets(targets_from_config(config))
    try:
        await asyncio.Event().wait()
    finally:
        await monitor.stop()
        await client.close()
        sys.stdout.flush()


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def add_supervisor_commands(commands: Any) -> None:
    up = commands.add_parser("up", help="start and supervise local instances until Ctrl-C")
    up.add_argument("names", nargs="*", metavar="NAME", help="only these (default: all)")
    up.add_argument(
        "--allow-shared-gpu", action="store_true", help="start two instances on one GPU anyway"
    )
    commands.add_parser("down", help="stop the instances recorded in the state file")
    logs = commands.add_parser("logs", help="an instance's log")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.add_argument("--lines", "-n", type=positive_int, default=200, help="how many (≥ 1)")
    propose = commands.add_parser("propose", help="master on GPU 0 and a worker per other GPU")
    propose.add_argument("--apply", action="store_true", help="save the proposal")


LIFECYCLE = {
    "starting": WorkerState.STARTING,
    "restarting": WorkerState.STARTING,
    "crashed": WorkerState.CRASHED,
    "crash loop": WorkerState.CRASHED,
    "stopped": WorkerState.STOPPED,
    "stopping": WorkerState.STOPPED,
}


def merge_supervised(healths: list[WorkerHealth], state: dict[str, Any]) -> list[WorkerHealth]:
    """Fold in what a supervisor (the window or `up`, in any process) recorded."""
    records = state.get("instances", {})
    merged = []
    for health in healths:
        record = records.get(health.name)
        if record is None:
            merged.append(health)
            continue
        pid = record.get("pid")
        alive = pid and ProcessId(int(pid), float(record.get("create_time") or 0)).alive()
        changes: dict[str, Any] = {
            "restarts": int(record.get("restarts", 0)),
            "last_crash": record.get("last_crash"),
            "pid": int(pid) if alive else None,
        }
        lifecycle = LIFECYCLE.get(str(record.get("state")))
        up = health.state in (WorkerState.ONLINE, WorkerState.BUSY)
        if lifecycle is not None and not up:
            changes["state"] = lifecycle
        merged.append(replace(health, **changes))
    return merged
