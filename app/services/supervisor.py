"""Start, watch and restart local ComfyUI instances; their state outlives ComfyFleet itself.

Each instance writes its output to its own log file; a thread follows that file (so the
instance survives a crash of ComfyFleet) and another waits for the exit, which is therefore
noticed at once. A state file records PID, start time, port and command of each instance: a
new supervisor adopts the ones still alive, and never signals a PID whose start time differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import psutil

from app.core.codec import parse_json
from app.core.errors import ComfyFleetError
from app.core.launch import Crash, CrashCause, LaunchSpec, RestartPolicy, classify_crash
from app.core.names import file_stem
from app.core.net import base_url
from app.services.comfy_client import ComfyClient
from app.services.processes import CannotRun, ProcessId, check_port, interrupt, kill_tree, spawn
from app.services.storage import atomic_write_text

log = logging.getLogger(__name__)
KEEP_LINES = 5000
KEEP_LAUNCH_LOGS = 5
PUMP_S = 0.02  # how often watcher threads' news reach the event loop


class InstanceState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    CRASHED = "crashed"
    RESTARTING = "restarting"
    CRASH_LOOP = "crash loop"
    STOPPING = "stopping"


def _computes_on(spec: LaunchSpec) -> str | None:
    """The GPU an instance computes on: the first it sees (one without a GPU chosen sees
    every GPU, said by UUID where NVML told them); None where it cannot be told, or on CPU."""
    if spec.gpu == "cpu":
        return None
    visible = spec.env.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[0] if visible else spec.gpu


class GpuInUse(ComfyFleetError):
    pass


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    state: InstanceState
    port: int
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_crash: str | None = None
    restart_in_s: float | None = None
    log_file: str = ""
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


@dataclass
class _Instance:
    spec: LaunchSpec
    status: InstanceStatus
    log_file: Path
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=KEEP_LINES))
    process: ProcessId | None = None
    exit_times: list[float] = field(default_factory=list)
    failures: int = 0
    stopping: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def rotate_logs(log_file: Path) -> None:
    """One log per launch: the last few launches are kept as .1, .2 …"""
    for number in range(KEEP_LAUNCH_LOGS - 1, 0, -1):
        older = log_file.with_name(f"{log_file.name}.{number}")
        if older.exists():
            older.replace(log_file.with_name(f"{log_file.name}.{number + 1}"))
    if log_file.exists():
        log_file.replace(log_file.with_name(f"{log_file.name}.1"))


def read_state(state_file: Path) -> dict[str, Any]:
    try:
        data = parse_json(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"instances": {}}
    return data if isinstance(data, dict) else {"instances": {}}


class Supervisor:
    def __init__(
        self,
        state_file: Path,
        logs_dir: Path,
        client: ComfyClient,
        policy: RestartPolicy | None = None,
        ready_timeout_s: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_file = state_file
        self.logs_dir = logs_dir
        self._client = client
        self.policy = policy or RestartPolicy()
        self.ready_timeout_s = ready_timeout_s
        self._clock = clock
        self._instances: dict[str, _Instance] = {}
        self._status_listeners: list[Callable[[InstanceStatus], None]] = []
        self._line_listeners: list[Callable[[str, str], None]] = []
        self._failure_listeners: list[Callable[[str, BaseException], None]] = []
        self._inbox: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._pump: asyncio.Future[None] | None = None
        self._watchers = 0  # watcher threads still running (they may still post)
        self._watchers_lock = threading.Lock()

    # listening

    def on_status(self, listener: Callable[[InstanceStatus], None]) -> None:
        self._status_listeners.append(listener)

    def on_line(self, listener: Callable[[str, str], None]) -> None:
        self._line_listeners.append(listener)

    def on_failure(self, listener: Callable[[str, BaseException], None]) -> None:
        """Hear when the supervisor's own watching failed (it starts again by itself)."""
        self._failure_listeners.append(listener)

    def snapshot(self) -> list[InstanceStatus]:
        return [i.status for i in self._instances.values()]

    def status(self, name: str) -> InstanceStatus | None:
        instance = self._instances.get(name)
        return instance.status if instance else None

    def lines(self, name: str) -> list[str]:
        instance = self._instances.get(name)
        return list(instance.lines) if instance else []

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{file_stem(name)}.log"

    # commands

    async def start(self, spec: LaunchSpec, allow_shared_gpu: bool = False) -> InstanceStatus:
        """Launch `spec`; refuses a taken port (naming its holder) and a shared GPU."""
        self._ensure_pump()
        current = self._instances.get(spec.name)
        if current is not None and current.process is not None and current.process.alive():
            return current.status
        self._check_gpu(spec, allow_shared_gpu)
        taken = {i.spec.port for i in self._instances.values()}
        check_port(spec.port, spec.listen, taken)
        instance = current or _Instance(
            spec,
            InstanceStatus(spec.name, InstanceState.STOPPED, spec.port),
            self.log_path(spec.name),
        )
        instance.spec = spec
        instance.stopping = False
        self._instances[spec.name] = instance
        self._launch(instance)
        return instance.status

    async def stop(self, name: str, timeout_s: float = 10.0) -> None:
        instance = self._instances.get(name)
        if instance is None:
            return
        instance.stopping = True
        for task in list(instance.tasks):
            task.cancel()
        process = instance.process.alive() if instance.process else None
        if process is None:
            self._set(
                instance, state=InstanceState.STOPPED, pid=None, restart_in_s=None, message=""
            )
            return
        self._set(instance, state=InstanceState.STOPPING)
        interrupt(process)
        try:
            await asyncio.to_thread(process.wait, timeout_s)
        except psutil.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing its process tree", name, timeout_s)
            kill_tree(process)
            with contextlib.suppress(psutil.Error):
                await asyncio.to_thread(process.wait, 5)
        self._set(instance, state=InstanceState.STOPPED, pid=None, restart_in_s=None, message="")

    async def restart(self, name: str) -> None:
        instance = self._instances.get(name)
        if instance is None:
            return
        await self.stop(name)
        instance.failures = 0
        await self.start(instance.spec, allow_shared_gpu=True)

    async def stop_all(self) -> None:
        """Stop every instance, then let the watchers' last news arrive."""
        await asyncio.gather(*(self.stop(name) for name in list(self._instances)))
        pump = self._pump
        if pump is not None and not pump.done():
            try:
                await asyncio.wait_for(asyncio.shield(pump), 2.0)
            except TimeoutError:
                pump.cancel()

    def adopt(self, specs: dict[str, LaunchSpec]) -> list[str]:
        """Take over instances a previous supervisor started, if the very same process lives."""
        self._ensure_pump()
        adopted = []
        for name, record in read_state(self.state_file).get("instances", {}).items():
            spec = specs.get(name)
            if spec is None or not record.get("pid"):
                continue
            process = ProcessId(int(record["pid"]), float(record.get("create_time", 0)))
            if process.alive() is None:
                continue  # gone, or the PID now belongs to another program: leave it alone
            instance = _Instance(
                spec,
                InstanceStatus(
                    name,
                    InstanceState.STARTING,
                    spec.port,
                    process.pid,
                    started_at=record.get("started_at"),
                    restarts=int(record.get("restarts", 0)),
                    last_crash=record.get("last_crash"),
                    log_file=str(self.log_path(name)),
                    message="adopted after a restart of ComfyFleet",
                ),
                self.log_path(name),
            )
            instance.process = process
            self._instances[name] = instance
            self._follow(instance, from_end=True)
            self._watch_thread(self._wait_exit, instance, process.alive())
            self._track(instance, self._wait_ready(instance))
            adopted.append(name)
        self._write_state()
        return adopted

    # internals

    def _check_gpu(self, spec: LaunchSpec, allow_shared_gpu: bool) -> None:
        gpu = _computes_on(spec)
        if allow_shared_gpu or gpu is None:
            return
        for other in self._instances.values():
            running = other.status.state not in (InstanceState.STOPPED, InstanceState.CRASH_LOOP)
            if other.spec.name != spec.name and _computes_on(other.spec) == gpu and running:
                shown = spec.gpu or f"{gpu} (the first visible: no GPU chosen)"
                raise GpuInUse(
                    f"GPU {shown} already runs {other.spec.name}: two instances on one GPU "
                    "share its VRAM and both slow down. Confirm to start it anyway."
                )

    def refuse(self, spec: LaunchSpec, reason: str) -> InstanceStatus:
        """Record an instance that is not launched as configured (ComfyUI would refuse it)."""
        current = self._instances.get(spec.name)
        if current is not None and current.process is not None and current.process.alive():
            return current.status
        instance = current or _Instance(
            spec,
            InstanceStatus(spec.name, InstanceState.STOPPED, spec.port),
            self.log_path(spec.name),
        )
        instance.spec = spec
        self._instances[spec.name] = instance
        self._give_up(instance, InstanceState.CRASHED, reason, "not started: fix its extra args")
        return instance.status

    def _launch(self, instance: _Instance) -> None:
        spec = instance.spec
        for folder in spec.folders:  # ComfyUI exits at once if --user-directory is missing
            Path(folder).mkdir(parents=True, exist_ok=True)
        rotate_logs(instance.log_file)
        try:
            process = spawn(list(spec.argv), spec.cwd, spec.env, instance.log_file)
        except CannotRun as exc:
            self._give_up(instance, InstanceState.CRASHED, str(exc), "not started: fix its Python")
            return
        instance.process = ProcessId.of(process.pid) or ProcessId(process.pid, self._clock())
        instance.lines.clear()
        self._set(
            instance,
            state=InstanceState.STARTING,
            pid=process.pid,
            started_at=self._clock(),
            restart_in_s=None,
            log_file=str(instance.log_file),
            message="",
        )
        self._follow(instance, from_end=False)
        self._watch_thread(self._wait_exit, instance, process)
        self._track(instance, self._wait_ready(instance))

    def _track(self, instance: _Instance, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        instance.tasks.add(task)
        task.add_done_callback(instance.tasks.discard)

    def _follow(self, instance: _Instance, from_end: bool) -> None:
        """Follow the instance's log file in a thread; lines arrive on the event loop."""
        process = instance.process

        def follow() -> None:
            try:
                with instance.log_file.open("rb") as handle:
                    if from_end:
                        handle.seek(0, 2)
                    pending = b""
                    while True:
                        chunk = handle.read(65536)
                        if chunk:
                            pending += chunk
                            *complete, pending = pending.split(b"\n")
                            for raw in complete:
                                self._post(
                                    self._on_line,
                                    instance,
                                    raw.decode("utf-8", "replace").rstrip("\r"),
                                )
                            continue
                        if instance.process is not process or (
                            process is not None and process.alive() is None
                        ):
                            return
                        time.sleep(0.05)
            except OSError as exc:
                log.warning("cannot follow %s: %s", instance.log_file, exc)

        self._watch_thread(lambda _: follow(), instance)

    def _watch_thread(self, target: Callable[..., None], instance: _Instance, *args: Any) -> None:
        """A watcher thread; the pump keeps draining while any is alive."""

        def run() -> None:
            try:
                target(instance, *args)
            finally:
                with self._watchers_lock:
                    self._watchers -= 1

        with self._watchers_lock:
            self._watchers += 1
        threading.Thread(target=run, daemon=True, name=f"watch-{instance.spec.name}").start()

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """From a watcher thread to the event loop, through a queue the loop drains.

        Not loop.call_soon_threadsafe: under qasync that emits a Qt signal from a plain
        Python thread, which crashed PySide6 now and then under load.
        """
        self._inbox.put((callback, args))

    def _ensure_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._drain_inbox())
            self._pump.add_done_callback(self._pump_done)

    def _pump_done(self, pump: asyncio.Future[None]) -> None:
        """The pump never dies unseen: a failure is logged, said, and the pump started again
        (else a crash would never be noticed again)."""
        error = None if pump.cancelled() else pump.exception()
        if error is None:
            return
        log.error("watching the instances failed; watching again", exc_info=error)
        for listener in self._failure_listeners:
            listener("watching the instances", error)
        self._ensure_pump()

    async def _drain_inbox(self) -> None:
        while True:
            while True:
                try:
                    callback, args = self._inbox.get_nowait()
                except queue.Empty:
                    break
                try:
                    callback(*args)
                except Exception:  # one bad listener must not stop noticing crashes
                    log.exception("handling an instance's news failed")
            with self._watchers_lock:
                watching = self._watchers > 0
            busy = any(i.tasks for i in self._instances.values())
            if not watching and not busy and self._inbox.empty():
                return  # nothing left to watch; start() and adopt() start the pump again
            await asyncio.sleep(PUMP_S)

    def _wait_exit(self, instance: _Instance, process: Any) -> None:
        """Popen.wait for our children; psutil's wait for adopted ones (exit code unknown)."""
        try:
            code = process.wait()
        except psutil.Error:
            code = None
        self._post(self._on_exit, instance, process.pid, code)

    def _on_line(self, instance: _Instance, line: str) -> None:
        instance.lines.append(line)
        for listener in self._line_listeners:
            listener(instance.spec.name, line)

    async def _wait_ready(self, instance: _Instance) -> None:
        url = base_url(
            "127.0.0.1" if instance.spec.listen in ("0.0.0.0", "::") else instance.spec.listen,
            instance.spec.port,
        )
        deadline = self._clock() + self.ready_timeout_s
        process = instance.process
        while self._clock() < deadline:
            if process is None or process.alive() is None:
                return
            if (await self._client.probe(url)).ok:
                instance.failures = 0
                self._set(instance, state=InstanceState.READY)
                return
            await asyncio.sleep(0.2)
        self._set(instance, message=f"not ready after {self.ready_timeout_s:g} s")
        alive = process.alive() if process else None
        if alive is not None:
            kill_tree(alive)  # counted as a crash by the exit watcher

    def _on_exit(self, instance: _Instance, pid: int, code: int | None) -> None:
        if instance.process is None or instance.process.pid != pid:
            return
        self._drain(instance)
        if instance.stopping:
            return
        crash = classify_crash(code, list(instance.lines))
        if instance.status.message.startswith("not ready"):
            crash = replace(crash, detail=instance.status.message)
        self._crashed(instance, crash)

    def _drain(self, instance: _Instance) -> None:
        """The last lines may still be unread when the exit is seen: read them now."""
        with contextlib.suppress(OSError):
            text = instance.log_file.read_text("utf-8", "replace").splitlines()
            known = len(instance.lines)
            if len(text) > known and (not known or text[known - 1] == instance.lines[-1]):
                for line in text[known:]:
                    self._on_line(instance, line)

    def _crashed(self, instance: _Instance, crash: Crash) -> None:
        now = self._clock()
        instance.exit_times.append(now)
        instance.failures += 1
        log.warning("%s exited: %s", instance.spec.name, crash.summary)
        if not crash.retryable:
            message = "not restarted: it would be refused again; fix its extra args"
            self._give_up(instance, InstanceState.CRASHED, crash.summary, message)
            return
        if self.policy.is_crash_loop(instance.exit_times, now):
            minutes = self.policy.loop_window_s / 60
            message = f"{self.policy.loop_exits} exits in {minutes:.0f} min: not restarting"
            self._give_up(instance, InstanceState.CRASH_LOOP, crash.summary, message)
            return
        delay = self.policy.delay(instance.failures)
        self._set(
            instance,
            state=InstanceState.RESTARTING,
            pid=None,
            last_crash=crash.summary,
            restart_in_s=delay,
            message=f"restarting in {delay:g} s",
        )
        self._track(instance, self._restart_later(instance, delay))

    def _give_up(self, instance: _Instance, state: InstanceState, crash: str, message: str) -> None:
        self._set(
            instance, state=state, pid=None, last_crash=crash, restart_in_s=None, message=message
        )

    async def _restart_later(self, instance: _Instance, delay: float) -> None:
        await asyncio.sleep(delay)
        if instance.stopping:
            return
        try:
            check_port(instance.spec.port, instance.spec.listen)
        except ComfyFleetError as exc:
            self._crashed(instance, Crash(CrashCause.PORT_IN_USE, None, str(exc), ()))
            return
        # counted silently: _launch publishes the new state with it
        instance.status = replace(instance.status, restarts=instance.status.restarts + 1)
        self._launch(instance)

    def _set(self, instance: _Instance, **changes: Any) -> None:
        instance.status = replace(instance.status, **changes)
        self._write_state()
        for listener in self._status_listeners:
            try:
                listener(instance.status)
            except Exception:  # (a listener's bug is logged; the supervisor goes on)
                log.exception("a status listener failed")

    def _write_state(self) -> None:
        records = {}
        for name, instance in self._instances.items():
            record = instance.status.as_json()
            record.update(
                argv=list(instance.spec.argv),
                cwd=instance.spec.cwd,
                create_time=instance.process.create_time if instance.process else None,
            )
            records[name] = record
        me = psutil.Process()
        data = {
            "supervisor_pid": me.pid,
            "supervisor_create_time": me.create_time(),
            "updated_at": self._clock(),
            "instances": records,
        }
        try:
            atomic_write_text(self.state_file, json.dumps(data, indent=2))
        except OSError as exc:
            log.warning("cannot write %s: %s", self.state_file, exc)
