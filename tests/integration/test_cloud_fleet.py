"""A Runpod pod in the fleet: once RUNNING it joins as a worker, answers 502 through the proxy
until its ComfyUI is up, takes the queue's items, and leaves when it stops."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from app.core.cloud import Pod, PodRecipe
from app.core.cloud_fleet import pod_id_of, with_pods
from app.core.config import FleetConfig, WorkerKind
from app.core.queue import ItemState
from app.core.runs import Participant
from app.services.queue_store import QueueStore
from app.services.runpod import RunpodClient
from tests.integration.runpod_helpers import KEY, simulated_runpod
from tests.integration.test_queue import add, dispatching, ended
from tests.waiting import until

PROXY = "http://127.0.0.1:{pod}"  # the simulator's stand-in for {pod}-{port}.proxy.runpod.net


def answer_code(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/system_stats", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.mark.asyncio
async def test_a_running_pod_joins_takes_items_and_leaves_when_stopped(tmp_path: Path) -> None:
    runpod = simulated_runpod(tmp_path / "pods")
    sim = next(runpod)
    try:
        async with aiohttp.ClientSession() as session:
            client = RunpodClient(session, KEY, sim.url)
            made = await client.create(PodRecipe(), "gpu-pod")
            pods: list[Pod] = [made]

            async def refresh() -> None:
                pods[:] = await client.pods()

            config = with_pods(FleetConfig(), pods, PROXY)
            assert config.workers == ()  # provisioning: not a worker yet
            seen: set[int] = set()

            def joined_and_up() -> bool:
                fleet = with_pods(FleetConfig(), pods, PROXY)
                if fleet.workers:
                    seen.add(answer_code(fleet.workers[0].url))
                return 200 in seen

            while not joined_and_up():  # (until it answers, or the test's timeout)
                await asyncio.sleep(0.05)
                await refresh()
            config = with_pods(FleetConfig(), pods, PROXY)
            (worker,) = config.workers
            assert (worker.name, worker.kind, pod_id_of(worker)) == (
                "gpu-pod",
                WorkerKind.REMOTE,
                made.id,
            )
            assert 502 in seen  # the proxy answered before its ComfyUI was up

            store = QueueStore(tmp_path / "queue.db")
            job = add(store, tmp_path, 3)
            async with dispatching(store, [Participant(worker.name, worker.url)]):
                await until(lambda: ended(store, job), timeout=60)
            assert [i.state for i in store.items(job)] == [ItemState.DONE] * 3

            await client.act(made.id, "stop")
            await refresh()
            assert with_pods(config, pods, PROXY).workers == ()  # it left the fleet
            assert answer_code(worker.url) == 502
    finally:
        runpod.close()


def test_the_real_proxy_form_makes_a_cloud_worker() -> None:
    pod = Pod(
        "abc123", "pod-a", "RUNNING", "NVIDIA H200", 1, 3.59, 60, (4,), ("stop",), ("8188/http",)
    )
    (worker,) = with_pods(FleetConfig(), [pod], "https://{pod}-{port}.proxy.runpod.net").workers
    assert (worker.kind, worker.host, worker.port) == (
        WorkerKind.CLOUD,
        "abc123-8188.proxy.runpod.net",
        443,
    )
    assert worker.url == "https://abc123-8188.proxy.runpod.net"
    other = Pod("x", "pod-a", "RUNNING", "NVIDIA H200", 1, 3.59, 60, (4,), ("stop",), ())
    assert (
        with_pods(FleetConfig(), [other], "https://{pod}-{port}.proxy.runpod.net").workers == ()
    )  # no ComfyUI port
