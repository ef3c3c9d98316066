"""`up`, `down`, `logs` and `propose`: the local fleet from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
import time

import psutil

from app.core.config import FleetConfig
from app.core.errors import ComfyFleetError
from app.core.launch import GpuInfo, propose_fleet
from app.core.names import file_stem
from app.services.comfy_client import ComfyClient
from app.services.gpus import GpuReader
from app.services.launch_plan import make_supervisor, plan_launches, state_file
from app.services.paths import AppPaths
from app.services.processes import ProcessId, interrupt, kill_tree, wait_gone
from app.services.queue_service import dispatch_until, open_fleet_queue
from app.services.storage import ConfigStore
from app.services.supervisor import InstanceStatus, read_state


def up_command(args: argparse.Namespace, config: FleetConfig, paths: AppPaths) -> int:
    try:
        return asyncio.run(_up(config, paths, args.names, args.allow_shared_gpu, args.queue_url))
    except KeyboardInterrupt:
        return 0


def _print_status(status: InstanceStatus) -> None:
    pid = f" pid {status.pid}" if status.pid else ""
    extra = f" — {status.message}" if status.message else ""
    crash = (
        f" (last crash: {status.last_crash})"
        if status.last_crash and status.state.value in ("restarting", "crash loop", "crashed")
        else ""
    )
    print(
        f"{time.strftime('%H:%M:%S')} {status.name}: {status.state.value}{pid}{crash}{extra}",
        flush=True,
    )


async def _up(
    config: FleetConfig, paths: AppPaths, names: list[str], shared: bool, queue_url: str | None
) -> int:
    gpus = await asyncio.to_thread(GpuReader().read)
    plan = plan_launches(config, paths.data_dir, gpus)
    for note in plan.notes:
        print(note)
    unknown = [n for n in names if n not in plan.specs and n not in plan.refused]
    if unknown:
        print(
            f"comfy-fleet: error: name: not launchable here: {', '.join(unknown)}", file=sys.stderr
        )
        return 2
    client = ComfyClient()
    supervisor = make_supervisor(config, paths, client)
    supervisor.on_status(_print_status)
    chosen = names or [*plan.specs, *plan.refused]
    failed = 0
    try:
        adopted = supervisor.adopt(plan.specs)
        for name in chosen:
            if name in adopted:
                continue
            refusal = plan.refused.get(name)
            try:
                if refusal is not None:
                    supervisor.refuse(refusal.spec, refusal.reason)
                    raise ComfyFleetError(f"not started: {refusal.reason}")
                await supervisor.start(plan.specs[name], allow_shared_gpu=shared)
            except ComfyFleetError as exc:
                failed += 1
                print(f"{name}: {exc}", file=sys.stderr, flush=True)
        if failed and failed == len(chosen):
            return 1
        await _serve_queue(config, paths, queue_url)
        print("stopping…", flush=True)
    finally:
        await supervisor.stop_all()
        await client.close()
    return 1 if failed else 0


async def _serve_queue(config: FleetConfig, paths: AppPaths, queue_url: str | None) -> None:
    """Until a signal: `up` also dispatches the fleet queue (once no other process does)."""
    stop = asyncio.Event()
    queue = open_fleet_queue(paths, config, queue_url)
    try:
        dispatching = asyncio.ensure_future(
            dispatch_until(
                queue,
                config,
                "`comfy-fleet up`",
                stop,
                say=lambda t: print(f"queue: {t}", flush=True),
            )
        )
        signalled = asyncio.ensure_future(until_signal())
        await asyncio.wait({dispatching, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if dispatching.done() and dispatching.exception() is not None:
            print(f"queue: not dispatched here: {dispatching.exception()}", flush=True)
        await signalled
        stop.set()
        with contextlib.suppress(ComfyFleetError):
            await dispatching
    finally:
        queue.close()


async def until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(getattr(signal, name), stop.set)
    await stop.wait()


def down_command(paths: AppPaths, timeout_s: float = 15.0) -> int:
    """Stop a running supervisor (it stops what it started), then anything left over."""
    state = read_state(state_file(paths))
    supervisor = ProcessId(
        int(state.get("supervisor_pid") or 0), float(state.get("supervisor_create_time") or 0)
    )
    running = (
        supervisor.alive() if supervisor.pid and supervisor.pid != psutil.Process().pid else None
    )
    if running is not None:
        print(f"asking the supervisor (pid {supervisor.pid}) to stop its instances")
        running.terminate()
        wait_gone(running, timeout_s)
    stopped = 0
    for name, record in read_state(state_file(paths)).get("instances", {}).items():
        if not record.get("pid"):
            continue
        process = ProcessId(int(record["pid"]), float(record.get("create_time") or 0)).alive()
        if process is None:
            continue  # gone, or the PID was recycled by another program: not ours to signal
        interrupt(process)
        if not wait_gone(process, timeout_s):
            kill_tree(process)
        stopped += 1
        print(f"stopped {name} (pid {record['pid']})")
    if not stopped and running is None:
        print("nothing was running")
    return 0


def logs_command(args: argparse.Namespace, paths: AppPaths) -> int:
    path = paths.log_dir / "instances" / f"{file_stem(args.name)}.log"
    if not path.exists():
        print(f"comfy-fleet: error: name: no log for {args.name!r} at {path}", file=sys.stderr)
        return 2
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle.readlines()[-args.lines :]:
            print(line, end="")
        sys.stdout.flush()
        if not args.follow:
            return 0
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                line = handle.readline()
                if line:
                    print(line, end="", flush=True)
                else:
                    time.sleep(0.2)
    return 0


def propose_command(args: argparse.Namespace, store: ConfigStore, config: FleetConfig) -> int:
    snapshot = GpuReader().read()
    gpus = [GpuInfo(g.index, g.uuid, g.name) for g in snapshot.gpus]
    proposal = propose_fleet(config, gpus)
    if snapshot.error:
        print(snapshot.error)
    print(f"master: GPU {proposal.master.gpu} on port {proposal.master.port}")
    for worker in proposal.workers:
        print(f"worker {worker.name}: GPU {worker.gpu} on port {worker.port}")
    if args.apply:
        store.save(
            dataclasses.replace(
                proposal,
                workers=proposal.workers
                + tuple(w for w in config.workers if w.kind.value != "local"),
            )
        )
        print(f"saved to {store.path}")
    else:
        print("(not saved: add --apply)")
    return 0
