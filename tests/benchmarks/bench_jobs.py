"""Benchmark: ComfyFleet's added latency per distributed run over a raw
`POST /distributed/queue` to the same simulated master + 2 workers (target <= 10 ms median).

Both sides go from "submit" to "the master's images are known": the raw client opens the
master's websocket, posts, waits for the end marker and reads the history; ComfyFleet's run
also follows both workers' websockets and tells who made which image. Rounds alternate.

    python tests/benchmarks/bench_jobs.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind  # noqa: E402
from app.core.workflow import canary_workflow  # noqa: E402
from app.services.job_service import JOBS_HTTP_TIMEOUT, JobService  # noqa: E402
from app.sim.fleet import start_sim  # noqa: E402


async def raw_run(session: aiohttp.ClientSession, url: str, ids: list[str], seed: int) -> float:
    client_id = uuid.uuid4().hex
    started = time.perf_counter()
    async with session.ws_connect(f"{url}/ws?clientId={client_id}") as ws:
        body = {"prompt": canary_workflow(seed), "client_id": client_id, "enabled_worker_ids": ids}
        async with session.post(f"{url}/distributed/queue", json=body) as response:
            prompt_id = (await response.json())["prompt_id"]
        async for message in ws:
            event = json.loads(message.data)
            data = event.get("data") or {}
            done = event["type"] == "executing" and data.get("node") is None
            if done and data.get("prompt_id") == prompt_id:
                break
    async with session.get(f"{url}/history/{prompt_id}") as response:
        history = await response.json()
    assert history[prompt_id]["outputs"]["5"]["images"]
    return time.perf_counter() - started


async def fleet_run(service: JobService, seed: int) -> float:
    master, workers = service.participants()
    started = time.perf_counter()
    result = await service.start([master, *workers], lambda p: None).execute(canary_workflow(seed))
    elapsed = time.perf_counter() - started
    assert [o.participant for o in result.outputs] == ["master", "w1", "w2"], result
    return elapsed


async def measure(config: FleetConfig, rounds: int) -> tuple[list[float], list[float]]:
    raw: list[float] = []
    ours: list[float] = []
    async with aiohttp.ClientSession(timeout=JOBS_HTTP_TIMEOUT) as session:
        service = JobService(session, config)
        ids = list((await service.sync()).ids.values())
        for warmup in range(3):
            await raw_run(session, service.participants()[0].url, ids, 2 * warmup)
            await fleet_run(service, 2 * warmup + 1)
        for round_ in range(rounds):
            seed = 1000 + 2 * round_  # never the same seed twice: ComfyUI would cache the run
            raw.append(await raw_run(session, service.participants()[0].url, ids, seed))
            ours.append(await fleet_run(service, seed + 1))
    return raw, ours


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    folder = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    sims = [start_sim(folder / name, args=["--sim-name", name]) for name in ("master", "w1", "w2")]
    config = FleetConfig(
        master=MasterConfig(port=sims[0].port),
        workers=tuple(
            WorkerConfig(n, WorkerKind.REMOTE, port=s.port)
            for n, s in zip(("w1", "w2"), sims[1:], strict=True)
        ),
    )
    try:
        raw, ours = asyncio.run(measure(config, rounds))
    finally:
        for sim in sims:
            sim.stop()
    added = [b - a for a, b in zip(raw, ours, strict=True)]
    median = statistics.median(added) * 1000
    print(f"raw POST /distributed/queue run: median {statistics.median(raw) * 1000:.1f} ms")
    print(
        "ComfyFleet run (3 websockets, attribution): "
        f"median {statistics.median(ours) * 1000:.1f} ms"
    )
    print(
        f"added per run over {rounds} alternating rounds: median {median:.1f} ms, "
        f"p90 {statistics.quantiles(added, n=10)[-1] * 1000:.1f} ms "
        f"(target <= 10 ms median: ratio {median / 10:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
