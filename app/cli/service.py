"""`comfy-fleet service install|run`: the fleet queue and the cloud guards without a window, so
the idle and budget guards keep protecting money while every desktop is closed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import plistlib
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from app.cli.common import EXIT_FAILURE, EXIT_OK, UsageError
from app.cli.jobs import stop_on_signals
from app.core.cloud import Pod
from app.core.cloud_fleet import pod_id_of, with_pods
from app.core.config import FleetConfig
from app.core.errors import SecretStoreError
from app.core.service_files import (
    AGENT_LABEL,
    SERVICE,
    credential_problem,
    launch_agent,
    systemd_unit,
    windows_task,
)
from app.services.autostart import launch_command
from app.services.cloud_watch import CloudWatch
from app.services.dispatcher import Dispatcher
from app.services.job_service import JobService
from app.services.paths import AppPaths
from app.services.queue_service import (
    FleetQueue,
    QueueBusy,
    QueuePaths,
    queue_has_work,
    queue_wait,
)
from app.services.runpod import API_KEY, RunpodClient
from app.services.sd_notify import Notifier
from app.services.secrets import SecretStore
from app.services.storage import ConfigStore

PLATFORMS = ("linux", "darwin", "win32")
WAIT_S = 5.0  # how often a service that waits for the queue's lock tries again


def add_service_commands(commands: Any) -> None:
    service = commands.add_parser(
        "service", help="the queue and the cloud guards as a background service, no window"
    )
    verbs = service.add_subparsers(dest="verb", required=True)
    install = verbs.add_parser(
        "install",
        help="write the service file: a systemd user unit, a macOS LaunchAgent or a Windows task",
    )
    here = sys.platform if sys.platform in PLATFORMS else "linux"
    install.add_argument("--platform", choices=PLATFORMS, default=here)
    install.add_argument(
        "--credential",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a secret systemd hands over (LoadCredential), e.g. RUNPOD_API_KEY=/etc/comfy/key",
    )
    verbs.add_parser("run", help="dispatch the queue and run the cloud guards until stopped")


def service_command(
    args: argparse.Namespace, paths: AppPaths, store: ConfigStore, config: FleetConfig
) -> int:
    if args.verb == "install":
        return _install(args, paths)
    return asyncio.run(serve(paths, store, config, SecretStore()))


def _install(args: argparse.Namespace, paths: AppPaths) -> int:
    credentials = {}
    for text in args.credential:
        name, _, path = text.partition("=")
        problem = credential_problem(name, path)
        if problem:
            raise UsageError(f"--credential {problem}")
        credentials[name] = path
    if credentials and args.platform != "linux":
        raise UsageError("--credential: only systemd hands credentials over (Linux)")
    command = [*launch_command(), "--config", str(paths.config_file)]
    home = Path.home()
    if args.platform == "linux":
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        unit = config_home / "systemd" / "user" / f"{SERVICE}.service"
        _write(unit, systemd_unit(command, credentials).encode())
        print(f"wrote {unit}")
        enable = f"systemctl --user daemon-reload && systemctl --user enable --now {SERVICE}"
        print(f"start it: {enable}")
        print(f"its log: journalctl --user -u {SERVICE} -f")
    elif args.platform == "darwin":
        agent = home / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"
        log_file = str(paths.log_dir / "service.log")
        _write(agent, plistlib.dumps(launch_agent(command, log_file)))
        print(f"wrote {agent}")
        print(f"start it: launchctl bootstrap gui/$(id -u) {agent}")
    else:
        task = paths.data_dir / f"{SERVICE}-task.xml"
        _write(task, windows_task(command).encode("utf-16"))
        print(f"wrote {task}")
        print(f'register it: schtasks /Create /TN ComfyFleet /XML "{task}"')
    return EXIT_OK


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def serve(
    paths: AppPaths, store: ConfigStore, config: FleetConfig, secrets: SecretStore
) -> int:
    """Dispatch the queue and watch the pods until SIGTERM, telling systemd how it goes."""
    stop = stop_on_signals()
    notifier = Notifier()
    queue = FleetQueue(QueuePaths.under(paths.data_dir))
    try:
        key = secrets.get(API_KEY)
    except SecretStoreError as exc:
        key = None
        print(f"cloud guards off: {exc}", flush=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    notifier.notify("READY=1", "STATUS=starting")
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            dispatcher = await _when_free(queue, session, config, notifier, stop)
            if dispatcher is None:
                return EXIT_OK  # stopped while another process dispatched
            fleet = Fleet(queue, store, config, session, key, dispatcher)
            print(f"{SERVICE} service: {fleet.summary()}", flush=True)
            jobs = [dispatcher.run(stop), fleet.watch.run(stop), _alive(notifier, fleet, stop)]
            await asyncio.gather(*jobs)
    except Exception as exc:
        notifier.notify(f"STATUS=failed: {exc}")
        print(f"{SERVICE} service failed: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    finally:
        notifier.notify("STOPPING=1")
        queue.close()
    print(f"{SERVICE} service stopped", flush=True)
    return EXIT_OK


async def _when_free(
    queue: FleetQueue,
    session: aiohttp.ClientSession,
    config: FleetConfig,
    notifier: Notifier,
    stop: asyncio.Event,
) -> Dispatcher | None:
    """The dispatcher once no other process dispatches the queue (it says who does, and keeps
    the watchdog fed while it waits); None when stopped first."""
    said = ""
    while not stop.is_set():
        try:
            return queue.dispatcher(session, config, f"{SERVICE} service")
        except QueueBusy as exc:
            if str(exc) != said:
                said = str(exc)
                print(f"waiting: {said}", flush=True)
            notifier.notify("WATCHDOG=1", f"STATUS=waiting: {said}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WAIT_S)
    return None


async def _alive(notifier: Notifier, fleet: Fleet, stop: asyncio.Event) -> None:
    """The watchdog's ping while the loop runs, with the fleet in words."""
    if notifier.watchdog_s is None:
        return
    while not stop.is_set():
        notifier.notify("WATCHDOG=1", f"STATUS={fleet.summary()}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), notifier.watchdog_s)


class Fleet:
    """The dispatcher over the configured fleet and the pods that join it."""

    def __init__(
        self,
        queue: FleetQueue,
        store: ConfigStore,
        config: FleetConfig,
        session: aiohttp.ClientSession,
        key: str | None,
        dispatcher: Dispatcher,
    ) -> None:
        self.queue, self.store, self.config, self.session = queue, store, config, session
        self.dispatcher = dispatcher
        self.watch = CloudWatch(
            lambda: RunpodClient(session, key, self.config.cloud.runpod_api_url) if key else None,
            lambda: self.config.cloud,
            self._pods_seen,
            self._has_work,
            lambda text: print(f"cloud: {text}", flush=True),
            queue_wait=lambda: queue_wait(queue.store, time.time()),
        )

    def summary(self) -> str:
        waiting, _ = queue_wait(self.queue.store, time.time())
        lanes = self.dispatcher.status()
        pods = f", {len(self.watch.pods)} pod(s)" if self.watch.pods else ""
        online = sum(lane.online for lane in lanes)
        return f"{online}/{len(lanes)} participant(s) online, {waiting} waiting{pods}"

    def _pods_seen(self, pods: list[Pod]) -> None:
        joined = with_pods(self.config, pods, self.config.cloud.runpod_proxy)
        if joined is self.config:
            return
        self.config = joined
        self.store.save(joined)  # (the window shows them too when it opens)
        master, workers = JobService(self.session, joined).participants()
        self.dispatcher.set_participants([master, *workers])

    def _has_work(self, pod: Pod) -> bool:
        worker = next((w for w in self.config.workers if pod_id_of(w) == pod.id), None)
        return worker is not None and queue_has_work(self.queue.store, self.dispatcher, worker.name)
