"""Benchmark: a team's queue on PostgreSQL against the local SQLite file, at scale, with a
dispatcher killed mid-run. Every figure is measured in this one run.

200 simulated instances (one process) take one job of 5,000 items (~2 s each). Three dispatch
candidates (`comfy-fleet queue run` processes) want the queue: for SQLite three on one machine
sharing the file (its OS lock), for PostgreSQL three "desktops" (own settings and data) on
one server (its lease). A third of the way through, the holder is killed (kill -9); another
takes over. Per store: throughput, CPU per item (the candidates; the server's processes too
for PostgreSQL), failover (kill → the next one dispatching), items lost and items run twice
(from every instance's own history).

    python tests/benchmarks/bench_team_queue.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind  # noqa: E402
from app.core.queue import ItemState, JobSpec, expand  # noqa: E402
from app.services.paths import resolve_paths  # noqa: E402
from app.services.queue_db import QueueDb  # noqa: E402
from app.services.queue_pg import PgQueueStore  # noqa: E402
from app.services.queue_service import QueuePaths  # noqa: E402
from app.services.queue_store import QueueStore  # noqa: E402
from app.services.storage import ConfigStore  # noqa: E402
from app.sim.fleet import http_json  # noqa: E402
from tests.benchmarks.bench_queue import chain  # noqa: E402
from tests.pg_server import NO_SERVER, PgServer, server_programs  # noqa: E402

TAKEN_OVER = "dispatching here now"


class Candidate:
    """One `queue run` process and its output lines, read as they come."""

    def __init__(self, config: Path, url: str | None) -> None:
        """`config`'s folder is that desktop's home: its data and state live there."""
        words = ["--queue-url", url] if url else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "--config", str(config), *words, "queue", "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, **desk_env(config.parent), "PYTHONPATH": str(ROOT)},
        )
        self.lines: list[tuple[float, str]] = []
        self.cpu_s = 0.0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.strip()))

    def said(self, text: str) -> float | None:
        return next((at for at, line in self.lines if line.startswith(text)), None)

    def sample_cpu(self) -> None:
        try:
            times = psutil.Process(self.process.pid).cpu_times()
            self.cpu_s = times.user + times.system
        except psutil.NoSuchProcess:
            pass

    def end(self) -> None:
        self.sample_cpu()
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def desk_env(home: Path) -> dict[str, str]:
    return {f"XDG_{kind}_HOME": str(home / kind.lower()) for kind in ("DATA", "STATE", "CONFIG")}


def local_queue(config: Path) -> QueueStore:
    """The SQLite queue a candidate on `config` uses."""
    saved = dict(os.environ)
    os.environ.update(desk_env(config.parent))
    try:
        return QueueStore(QueuePaths.under(resolve_paths(config).data_dir).db)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def fleet_config(folder: Path, ports: list[int]) -> Path:
    config = folder / "fleet.json"
    folder.mkdir(parents=True, exist_ok=True)
    ConfigStore(config).save(
        FleetConfig(
            master=MasterConfig(port=ports[0]),
            workers=tuple(
                WorkerConfig(f"w{n}", WorkerKind.REMOTE, port=port)
                for n, port in enumerate(ports[1:], 1)
            ),
        )
    )
    return config


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark stopped: {what} did not happen in {timeout:.0f} s")
        time.sleep(0.1)


def run_store(
    name: str, store: QueueDb, configs: list[Path], url: str | None, items: int, ports: list[int]
) -> dict[str, Any]:
    spec = JobSpec(f"team-{name}", chain(False, size=64), items, seed=1)
    job = store.add_job(spec, expand(spec), configs[0].parent / "out")
    begun = time.monotonic()
    first = Candidate(configs[0], url)
    wait_for(lambda: store.waiting_count(job) < items, 600, "a send")
    first_send = time.monotonic() - begun
    others = [Candidate(c, url) for c in configs[1:]]
    wait_for(lambda: all(o.said("waiting:") for o in others), 60, "the others waiting")
    started = time.monotonic()
    wait_for(lambda: store.job(job).count(ItemState.DONE) >= items // 3, 600, "a third done")
    first.sample_cpu()
    killed = time.monotonic()
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    wait_for(lambda: any(o.said(TAKEN_OVER) for o in others), 60, "a takeover")
    failover = min(o.said(TAKEN_OVER) or 1e9 for o in others) - killed
    wait_for(lambda: store.job_brief(job).ended is not None, 900, "the job's end")
    seconds = time.monotonic() - started
    for candidate in others:
        candidate.end()
    done = store.job(job).count(ItemState.DONE)
    cpu = first.cpu_s + sum(o.cpu_s for o in others)
    return {
        "done": done,
        "lost": items - done,
        "twice": ran_twice(ports, job),
        "seconds": seconds,
        "rate": done / seconds,
        "steady": done / (seconds - failover),  # (the gap while nobody dispatched left out)
        "cpu_ms": 1000 * cpu / items,
        "failover_s": failover,
        "first_send_s": first_send,
    }


def ran_twice(ports: list[int], job: int) -> int:
    seen: dict[int, int] = {}
    for port in ports:
        for entry in http_json(f"http://127.0.0.1:{port}/history").values():
            tag = entry["prompt"][3].get("comfyfleet", {})
            if tag.get("job") == job and entry["status"]["completed"]:
                seen[tag["item"]] = seen.get(tag["item"], 0) + 1
    return sum(n - 1 for n in seen.values() if n > 1)


def server_cpu_s(server: PgServer) -> float:
    assert server.process is not None
    root = psutil.Process(server.process.pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def report(name: str, figures: dict[str, Any], extra: str = "") -> None:
    print(
        f"  {name}: {figures['done']} done, {figures['lost']} lost, {figures['twice']} run twice;"
        f" {figures['rate']:.1f} items/s over {figures['seconds']:.1f} s"
        f" ({figures['steady']:.1f} without the failover gap);"
        f" candidates' CPU {figures['cpu_ms']:.2f} ms/item{extra};"
        f" failover {figures['failover_s']:.1f} s after kill -9;"
        f" first item sent {figures['first_send_s']:.1f} s after the start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 instances, 600 items")
    args = parser.parse_args()
    instances, items, item_s = (40, 600, 1.0) if args.quick else (200, 5000, 2.0)
    programs = server_programs()
    if programs is None:
        raise SystemExit(NO_SERVER)
    folder = Path(tempfile.mkdtemp(prefix="bench-team-"))
    sims = subprocess.Popen(
        [sys.executable, "-m", "app.sim.multi", str(instances), str(folder / "multi"),
         "--sim-time-scale", str(item_s / 0.08)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    server = PgServer(programs)
    try:
        assert sims.stdout is not None
        ports = json.loads(sims.stdout.readline())["ports"]
        print(
            f"{instances} simulated instances, one job of {items} items of ~{item_s:.0f} s,"
            f" 3 dispatch candidates, the holder killed a third of the way (ideal"
            f" {items * item_s / instances:.0f} s of work)"
        )
        shared = fleet_config(folder / "one-desktop", ports)
        lite = local_queue(shared)
        sqlite = run_store("sqlite", lite, [shared] * 3, None, items, ports)
        report("SQLite, 3 candidates on one machine", sqlite)
        for port in ports:  # (the next run's job has the same number: its own count)
            http_json(f"http://127.0.0.1:{port}/history", {"clear": True})
        server.start()
        url = server.new_database()
        desks = [fleet_config(folder / f"desk{n}", ports) for n in range(3)]
        pg = PgQueueStore(url)
        before = server_cpu_s(server)
        figures = run_store("postgresql", pg, desks, url, items, ports)
        db_ms = 1000 * (server_cpu_s(server) - before) / items
        report("PostgreSQL, 3 desktops", figures, f" + the server's {db_ms:.2f} ms/item")
        print(
            f"  PostgreSQL / SQLite: throughput {figures['rate'] / sqlite['rate']:.2f}"
            f" ({figures['steady'] / sqlite['steady']:.2f} without the failover gaps),"
            f" candidates' CPU per item {figures['cpu_ms'] / sqlite['cpu_ms']:.2f}"
        )
        pg.close()
    finally:
        server.remove()
        sims.terminate()
        try:
            sims.wait(30)
        except subprocess.TimeoutExpired:
            sims.kill()


if __name__ == "__main__":
    main()
