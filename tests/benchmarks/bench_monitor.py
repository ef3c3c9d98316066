"""Benchmark: the monitor watching 200 simulated workers at 1 Hz, and time to notice a death.

    python tests/benchmarks/bench_monitor.py [--workers 200] [--seconds 60]
        [--mode app|headless] [--same-cpus]

Prints CPU use of the process (the monitor alone, then the whole app with its window,
offscreen, then the app again with the simulated fleet on the same CPUs; each in a fresh
process) with its user/system split and its busiest threads (in the app: the GUI's MainThread
and the monitor's fleet-monitor), event-loop lag p99 (in the app: the Qt loop's, measured by a
Qt timer) and RSS, against the targets (<= 5 % of one core, <= 20 ms, <= 200 MB), then the time
from a remote worker's SIGKILL to "offline" at default settings (target <= 2.5 s). The
simulated workers run in one other process on the same machine: on a CPU of their own (they
stand for other machines) unless --same-cpus.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.health import ProbeSchedule, WorkerHealth, WorkerState
from app.services.comfy_client import ComfyClient
from app.services.monitor import FleetMonitor, MonitorTarget, targets_from_config
from app.sim.fleet import REPO_ROOT, start_sim


def start_multi(count: int, folder: Path) -> tuple[subprocess.Popen[str], list[int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.sim.multi", str(count), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    ports: list[int] = json.loads(process.stdout.readline())["ports"]
    return process, ports


def keep_apart(sims: int) -> str:
    """The simulated fleet stands for other machines: on a CPU of its own it does not evict the
    app's caches between probes (on a 2-CPU machine, sharing moved the app's figure by ~20 %).
    The app's threads, all started after this, keep to the other CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "one CPU: all shared"
    os.sched_setaffinity(sims, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))
    return f"the simulated fleet on CPU {cpus[-1]}, the app on CPU {', '.join(map(str, cpus[:-1]))}"


async def lag_probe(samples: list[float], stop: asyncio.Event, period: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(period)
        samples.append((loop.time() - start - period) * 1000)


def qt_lag_probe(samples: list[float], period_ms: int = 50) -> Callable[[], None]:
    """The GUI's event loop lag, measured by a Qt timer: in the app the Qt loop is the loop
    (and a Qt timer costs the measurement less than an asyncio sleep under qasync does)."""
    from PySide6.QtCore import Qt, QTimer

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(period_ms)
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        samples.append((now - last[0] - period_ms / 1000) * 1000)
        last[0] = now

    timer.timeout.connect(tick)
    timer.start()
    return timer.stop


def thread_times(process: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in process.threads()}


async def measure(
    seconds: float, warmup: float, qt_lag: bool = False
) -> tuple[float, float, float]:
    me = psutil.Process()
    samples: list[float] = []
    stop = asyncio.Event()
    lag = None if qt_lag else asyncio.create_task(lag_probe(samples, stop))
    stop_qt = qt_lag_probe(samples) if qt_lag else None
    await asyncio.sleep(warmup)
    samples.clear()
    cpu0, wall0, threads0 = me.cpu_times(), time.monotonic(), thread_times(me)
    await asyncio.sleep(seconds)
    cpu1, wall1, threads1 = me.cpu_times(), time.monotonic(), thread_times(me)
    stop.set()
    if lag is not None:
        await lag
    if stop_qt is not None:
        stop_qt()
    wall = wall1 - wall0
    user, system = (cpu1.user - cpu0.user) / wall * 100, (cpu1.system - cpu0.system) / wall * 100
    cpu = user + system
    p99 = statistics.quantiles(samples, n=100)[98]
    names = {t.native_id: t.name for t in threading.enumerate()}
    busiest = sorted(
        ((threads1[t] - threads0.get(t, 0)) / wall * 100, names.get(t, str(t))) for t in threads1
    )[::-1]
    print(
        f"  user {user:.1f} %, system {system:.1f} %; busiest threads: "
        + ", ".join(f"{name} {share:.1f} %" for share, name in busiest[:3])
        + f"; {len(samples)} lag samples, max {max(samples):.1f} ms"
    )
    return cpu, p99, me.memory_info().rss / 2**20


async def headless(ports: list[int], seconds: float, warmup: float) -> tuple[float, float, float]:
    client = ComfyClient()
    monitor = FleetMonitor(client, ProbeSchedule(idle_s=1.0, busy_s=1.0))
    probes = 0

    def count(_: WorkerHealth) -> None:
        nonlocal probes
        probes += 1

    monitor.subscribe(count)
    monitor.set_targets([MonitorTarget(f"w{p}", "remote", f"http://127.0.0.1:{p}") for p in ports])
    try:
        result = await measure(seconds, warmup)
    finally:
        await monitor.stop()
        await client.close()
    online = sum(h.state is WorkerState.ONLINE for h in monitor.snapshot())
    print(f"  {online}/{len(ports)} online at the end; {probes / (seconds + warmup):.0f} probes/s")
    return result


def run_app(ports: list[int], seconds: float, warmup: float) -> tuple[float, float, float]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import qasync

    from app.services.paths import resolve_paths
    from app.services.storage import ConfigStore, LoadResult
    from app.ui.application import DesktopApp, collect_garbage_on_gui_thread, create_qt_app

    qt_app = create_qt_app([])
    collect_garbage_on_gui_thread(qt_app)  # as run_app does
    workers = tuple(WorkerConfig(f"w{i}", WorkerKind.REMOTE, port=p) for i, p in enumerate(ports))
    config = FleetConfig(
        master=MasterConfig(port=ports[0]),
        workers=workers[1:],
        app=AppSettings(poll_interval_s=1.0, busy_poll_interval_s=1.0),
    )
    folder = tempfile.mkdtemp()
    paths = resolve_paths(Path(folder) / "fleet.json")
    ConfigStore(paths.config_file).save(config)
    desktop = DesktopApp(qt_app, paths, LoadResult(config))
    result: tuple[float, float, float] = (0, 0, 0)

    async def main() -> None:
        nonlocal result
        desktop.window.show()
        await desktop.start()
        result = await measure(seconds, warmup, qt_lag=True)
        states = [h.state for h in desktop.monitor.snapshot()]
        print(
            f"  {states.count(WorkerState.ONLINE)}/{len(states)} online at the end "
            f"(window: {desktop.window.model.rowCount()} rows)"
        )
        await desktop.stop()

    with asyncio.Runner(loop_factory=functools.partial(qasync.QEventLoop, qt_app)) as runner:
        runner.run(main())
    desktop.instance.close()
    return result


async def time_to_offline(folder: Path, rounds: int) -> list[float]:
    """SIGKILL a remote worker at a random moment; how long until the monitor says offline."""
    client = ComfyClient()
    monitor = FleetMonitor(client, ProbeSchedule())  # the defaults: 2 s, jitter, 1 miss
    times = []
    changed = asyncio.Event()
    monitor.subscribe(lambda h: changed.set())
    try:
        for number in range(rounds):
            sim = start_sim(folder / f"die{number}")
            monitor.set_targets(
                targets_from_config(FleetConfig(master=MasterConfig(port=sim.port)))
            )
            while (
                monitor.health("master") or WorkerHealth("", "", "", WorkerState.STARTING)
            ).state is not WorkerState.ONLINE:
                changed.clear()
                await changed.wait()
            await asyncio.sleep(0.5 + 1.7 * number / max(1, rounds - 1))  # spread the phase
            sim.process.kill()
            killed = time.monotonic()
            while monitor.health("master").state is not WorkerState.OFFLINE:  # type: ignore[union-attr]
                changed.clear()
                await changed.wait()
            times.append(time.monotonic() - killed)
            sim.process.wait()
            monitor.set_targets([])
    finally:
        await monitor.stop()
        await client.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--mode", choices=["app", "headless", "both"], default="both")
    parser.add_argument("--death-rounds", type=int, default=6)
    parser.add_argument(
        "--same-cpus", action="store_true", help="let the simulated fleet share the app's CPUs"
    )
    args = parser.parse_args()
    if args.mode == "both":  # each run in a fresh process: the app's run must not inherit
        own = ["--workers", str(args.workers), "--seconds", str(args.seconds)]
        for mode in (["headless"], ["app"], ["app", "--same-cpus"]):  # another run's heap
            subprocess.run(
                [sys.executable, __file__, *own, "--mode", *mode, "--death-rounds", "0"],
                check=True,
            )
        return death_rounds(args.death_rounds)
    folder = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    sims, ports = start_multi(args.workers, folder)
    print(
        f"{len(ports)} simulated workers in one process (pid {sims.pid}); "
        f"{args.seconds:.0f} s at 1 Hz, {psutil.cpu_count()} CPUs; "
        + ("all CPUs shared" if args.same_cpus else keep_apart(sims.pid))
    )
    try:
        print(f"{args.mode}:")
        if args.mode == "headless":
            cpu, p99, rss = asyncio.run(headless(ports, args.seconds, args.warmup))
        else:
            cpu, p99, rss = run_app(ports, args.seconds, args.warmup)
        print(f"  CPU {cpu:.1f} % of one core (target <= 5 %: ratio {cpu / 5:.2f})")
        print(f"  event-loop lag p99 {p99:.1f} ms (target <= 20 ms: ratio {p99 / 20:.2f})")
        print(f"  RSS {rss:.0f} MB (target <= 200 MB: ratio {rss / 200:.2f})", flush=True)
    finally:
        sims.terminate()
        sims.wait()
    return death_rounds(args.death_rounds)


def death_rounds(rounds: int) -> int:
    if rounds <= 0:
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    times = asyncio.run(time_to_offline(folder, rounds))
    print(
        f"death -> offline at defaults over {len(times)} kills: median "
        f"{statistics.median(times):.2f} s, max {max(times):.2f} s "
        f"(target <= 2.5 s: ratio {max(times) / 2.5:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
