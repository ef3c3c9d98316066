"""Benchmark: the fleet queue against ComfyUI-Distributed's own ways, on mixed-speed simulated
fleets, and the queue at scale. Every figure is measured in this one run.

Fleets (speeds as --sim-time-scale: a card 2× faster runs at half the scale), 60 images of
about 1 s on the slowest card:
  (a) ComfyUI-Distributed: /distributed/queue with DistributedCollector, one image per
      participant per run, runs back to back;
  (b) the same with the collector's load_balance (one participant runs each whole run);
  (c) ComfyFleet's queue (the master and the workers each take items).
For each: images per minute, the ratio to the ideal (the sum of the participants' own rates,
from their execution times in ComfyUI's history), each GPU's idle share, the median idle gap
between two items on a GPU, and (c)'s dispatch CPU per item.

Scale: 200 simulated instances (one process), 2,000 items of ~5 s: the dispatcher's CPU per
item and whether any item was lost; a DB holding 100,000 finished items: its size and the time
of `queue list`.

    python tests/benchmarks/bench_queue.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind  # noqa: E402
from app.core.queue import ItemState, JobSpec, expand  # noqa: E402
from app.core.runs import Participant  # noqa: E402
from app.services.dispatcher import Dispatcher  # noqa: E402
from app.services.job_service import JobService  # noqa: E402
from app.services.queue_store import QueueStore  # noqa: E402
from app.sim.fleet import SimInstance, start_sim  # noqa: E402

ITEM_SIM_S = 0.12  # the chain below, in simulated seconds at --sim-time-scale 1 (512×512)
RECORDED = ROOT / "tests" / "data" / "recordings" / "workflows"


def chain(distributed: bool, load_balance: bool = False, size: int = 512) -> dict[str, Any]:
    """workflow_nomodel's chain; with the Distributed nodes as workflow_distributed*.json."""
    name = "workflow_distributed_nomodel.json" if distributed else "workflow_nomodel.json"
    workflow: dict[str, Any] = json.loads((RECORDED / name).read_text(encoding="utf-8"))
    workflow["1"]["inputs"].update(width=size, height=size)
    if distributed:
        workflow["3"]["inputs"]["load_balance"] = load_balance
    return workflow


def executions(url: str) -> list[tuple[float, float]]:
    """(start, end) in seconds of every prompt in an instance's history, by start."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/history?max_items=100000", timeout=30) as answer:
        history = json.loads(answer.read())
    spans = []
    for entry in history.values():
        stamps = {kind: data.get("timestamp") for kind, data in entry["status"]["messages"]}
        if stamps.get("execution_start") and stamps.get("execution_success"):
            spans.append((stamps["execution_start"] / 1000, stamps["execution_success"] / 1000))
    return sorted(spans)


def gaps(spans: list[tuple[float, float]]) -> list[float]:
    return [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]


class Fleet:
    def __init__(self, folder: Path, scales: list[float]) -> None:
        self.sims: dict[str, SimInstance] = {}
        for number, scale in enumerate(scales):
            name = "master" if number == 0 else f"w{number}"
            self.sims[name] = start_sim(folder / name, args=["--sim-time-scale", str(scale)])
        master = self.sims["master"]
        self.config = FleetConfig(
            master=MasterConfig(port=master.port),
            workers=tuple(
                WorkerConfig(n, WorkerKind.REMOTE, port=s.port)
                for n, s in self.sims.items()
                if n != "master"
            ),
        )

    def stop(self) -> None:
        for sim in self.sims.values():
            sim.stop()

    def spans(self) -> dict[str, list[tuple[float, float]]]:
        return {n: executions(s.url) for n, s in self.sims.items()}


async def distributed_way(fleet: Fleet, images: int, load_balance: bool) -> dict[str, Any]:
    """(a)/(b): one /distributed/queue run after another until `images` images exist."""
    async with aiohttp.ClientSession() as session:
        service = JobService(session, fleet.config)
        await service.sync()
        master, workers = service.participants()
        ids = [w.worker_id for w in workers]
        made, seed, started = 0, 1, time.perf_counter()
        while made < images:
            client_id = uuid.uuid4().hex
            workflow = chain(True, load_balance)
            workflow["10"]["inputs"]["seed"] = seed
            seed += 10
            async with session.ws_connect(f"{master.url}/ws?clientId={client_id}") as ws:
                body = {"prompt": workflow, "client_id": client_id, "enabled_worker_ids": ids}
                async with session.post(f"{master.url}/distributed/queue", json=body) as answer:
                    prompt_id = (await answer.json())["prompt_id"]
                async for message in ws:
                    event = json.loads(message.data)
                    data = event.get("data") or {}
                    ended = event["type"] == "executing" and data.get("node") is None
                    if ended and data.get("prompt_id") == prompt_id:
                        break
            async with session.get(f"{master.url}/history/{prompt_id}") as answer:
                outputs = (await answer.json())[prompt_id]["outputs"]
            made += sum(len(node.get("images", [])) for node in outputs.values())
        return {"images": made, "seconds": time.perf_counter() - started}


async def queue_way(fleet: Fleet, folder: Path, items: int) -> dict[str, Any]:
    """(c): one job of `items` items, the dispatcher in this process."""
    store = QueueStore(folder / "queue.db")
    spec = JobSpec("bench", chain(False), items, seed=1)
    job = store.add_job(spec, expand(spec), folder / "out")
    lanes = [Participant(n, s.url) for n, s in fleet.sims.items()]
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(store, session, lanes)
        stop = asyncio.Event()
        cpu, started = time.process_time(), time.perf_counter()
        task = asyncio.create_task(dispatcher.run(stop))
        while store.job_brief(job).ended is None:
            await asyncio.sleep(0.05)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        stop.set()
        await task
    done = store.items(job)
    lost = [i for i in done if i.state is not ItemState.DONE]
    store.close()
    return {"images": len(done) - len(lost), "seconds": seconds, "cpu": cpu, "lost": len(lost)}


def report(
    label: str, result: dict[str, Any], spans: dict[str, list[tuple[float, float]]], ideal: float
) -> float:
    rate = result["images"] / result["seconds"] * 60
    busy = {n: sum(b - a for a, b in s) for n, s in spans.items()}
    idle = ", ".join(f"{n} {100 * (1 - busy[n] / result['seconds']):.0f}%" for n in spans)
    every_gap = [g for s in spans.values() for g in gaps(s)]
    gap = f"{1000 * statistics.median(every_gap):.1f} ms" if every_gap else "—"
    extra = ""
    if "cpu" in result:
        per_item = 1000 * result["cpu"] / max(1, result["images"])
        extra = f"; dispatch CPU {per_item:.2f} ms/item, lost {result['lost']}"
    print(
        f"  {label}: {result['images']} images in {result['seconds']:.1f} s = {rate:.1f}/min, "
        f"{rate / ideal:.2f} × ideal; idle {idle}; median gap between items {gap}{extra}"
    )
    return rate


async def mixed(folder: Path, scales: list[float], images: int) -> None:
    speeds = ":".join(f"{max(scales) / s:g}" for s in scales)
    print(f"fleet {speeds} (master + {len(scales) - 1} workers), {images} images:")
    fleet = Fleet(folder / "c", scales)  # fresh instances for each way: empty histories
    try:
        queued = await queue_way(fleet, folder / "c", images)
        spans_c = fleet.spans()
    finally:
        fleet.stop()
    own = {n: statistics.median(b - a for a, b in s) for n, s in spans_c.items() if s}
    ideal = sum(60 / t for t in own.values())
    per = ", ".join(f"{n} {t:.2f} s" for n, t in own.items())
    print(f"  ideal {ideal:.1f}/min (each participant's own time per image: {per})")
    rates = {}
    for label, balance in (("(a) Distributed", False), ("(b) load_balance", True)):
        fleet = Fleet(folder / label[1], scales)
        try:
            result = await distributed_way(fleet, images, load_balance=balance)
            rates[label] = report(label, result, fleet.spans(), ideal)
        finally:
            fleet.stop()
    rate_c = report("(c) ComfyFleet queue", queued, spans_c, ideal)
    print(f"  (c) / (a) = {rate_c / rates['(a) Distributed']:.2f}")


async def scale(folder: Path, instances: int, items: int, item_s: float) -> None:
    print(f"scale: {instances} instances (one process), {items} items of ~{item_s:.0f} s:")
    time_scale = item_s / 0.08  # the 64×64 chain takes 0.08 simulated seconds
    sims = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.sim.multi",
            str(instances),
            str(folder / "multi"),
            "--sim-time-scale",
            str(time_scale),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert sims.stdout is not None
        ports = json.loads(sims.stdout.readline())["ports"]
        store = QueueStore(folder / "scale.db")
        spec = JobSpec("scale", chain(False, size=64), items, seed=1)
        job = store.add_job(spec, expand(spec), folder / "scale-out")
        lanes = [Participant(f"i{n}", f"http://127.0.0.1:{p}") for n, p in enumerate(ports)]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            dispatcher = Dispatcher(store, session, lanes)
            stop = asyncio.Event()
            before, started = os.times(), time.perf_counter()
            task = asyncio.create_task(dispatcher.run(stop))
            while store.job_brief(job).ended is None:
                await asyncio.sleep(0.2)
            seconds, after = time.perf_counter() - started, os.times()
            stop.set()
            await task
        states = [i.state for i in store.items(job)]
        lost = len(states) - states.count(ItemState.DONE)
        ideal = items * item_s / instances
        user, system = (1000 * (b - a) / items for a, b in zip(before[:2], after[:2], strict=True))
        print(
            f"  {states.count(ItemState.DONE)} done, {lost} lost, in {seconds:.1f} s "
            f"(ideal {ideal:.1f} s): dispatcher CPU {user + system:.2f} ms/item "
            f"(user {user:.2f}, system {system:.2f}: sockets, SQLite's and the images' writes)"
        )
        print(f"  this disk: {1000 * file_write_s(folder):.2f} ms of CPU to write one small file")
    finally:
        sims.terminate()
        sims.wait(30)


def file_write_s(folder: Path, files: int = 500) -> float:
    """CPU seconds this machine takes to create and write one small file (as each image is)."""
    target = folder / "write-cost"
    target.mkdir()
    before = time.process_time()
    for number in range(files):
        (target / f"{number}.png").write_bytes(b"x" * 4096)
    return (time.process_time() - before) / files


def big_db(folder: Path, finished: int) -> None:
    from app.cli.queue import _line

    store = QueueStore(folder / "big.db")
    workflow = chain(False)
    per_job = 1000
    now = time.time()
    for number in range(finished // per_job):
        spec = JobSpec(f"job{number}", workflow, per_job, seed=number * per_job)
        job = store.add_job(spec, expand(spec), folder / "big-out")
        store._db.execute(
            "UPDATE items SET state = 'done', participant = 'gpu' || (idx % 8),"
            " prompt_id = lower(hex(randomblob(16))), sent_at = ?, started_at = ?,"
            " finished_at = ?, files = json_array(? || '/job' || job || '_item' || idx ||"
            " '_seed' || seed || '_gpu0_0.png') WHERE job = ?",
            (now, now, now + 1, str(folder / "big-out"), job),
        )
        store._db.execute("UPDATE jobs SET ended = ? WHERE id = ?", (now + 1, job))
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(p.stat().st_size for p in folder.glob("big.db*")) / 1024**2
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        lines = [_line(j, time.time()) for j in store.jobs()]
        timings.append(time.perf_counter() - started)
    assert len(lines) == finished // per_job
    print(
        f"DB with {finished} finished items: {size:.1f} MB; `queue list` "
        f"{1000 * statistics.median(timings):.1f} ms median of 5 (in process)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(folder / "xdg")}
    target = folder / "xdg" / "comfy-fleet"
    target.mkdir(parents=True, exist_ok=True)
    os.replace(folder / "big.db", target / "queue.db")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "app", "--config", str(folder / "none.json"), "queue", "list"],
        env=env,
        capture_output=True,
        check=True,
    )
    print(f"  the whole command, Python's start included: {time.perf_counter() - started:.2f} s")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    args = parser.parse_args()
    images = 21 if args.quick else 60
    slowest = 1.0 / ITEM_SIM_S  # about 1 s per image on the slowest card
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as name:
        folder = Path(name)
        await mixed(folder / "124", [slowest, slowest / 2, slowest / 4], images)
        await mixed(folder / "1118", [slowest, slowest, slowest, slowest / 8], images)
        if args.quick:
            await scale(folder / "scale", 20, 100, 1.0)
            big_db(folder / "db", 5000)
        else:
            await scale(folder / "scale", 200, 2000, 5.0)
            big_db(folder / "db", 100_000)


if __name__ == "__main__":
    asyncio.run(main())
