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
from tests.integration.runpod_helpers import KEY, SimRunpod, simulated_runpod
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_the_guards_stop_an_idle_pod_and_every_pod_past_the_budget(runpod: SimRunpod) -> None:
    from app.core.cloud import CloudSettings
    from app.services.cloud_watch import CloudWatch

    said: list[str] = []
    busy = {"yes": True}
    clock = Clock()
    settings = CloudSettings(idle_stop_min=15, daily_budget_usd=0)
    async with aiohttp.ClientSession() as session:
        client = RunpodClient(session, KEY, runpod.url)
        watch = CloudWatch(lambda: client, lambda: settings, lambda pods: None,
                           lambda pod: busy["yes"], said.append, clock)  # fmt: skip
        pod = await client.create(PodRecipe(), "idle-pod")
        while (await client.pod(pod.id)).status != "RUNNING":
            await asyncio.sleep(0.05)
        await watch.tick()  # first seen running: the clock starts
        clock.now += 20 * 60
        await watch.tick()  # it had work
        busy["yes"] = False
        clock.now += 14 * 60
        await watch.tick()
        assert (await client.pod(pod.id)).status == "RUNNING" and not said
        clock.now += 60
        await watch.tick()  # 15 min without work
        stopped = await client.pod(pod.id)
        assert stopped.status == "EXITED" and stopped.cost_per_h == 0.0
        assert said == ["stopped idle-pod: no work for it for 15 min (it cost $0.44/h)"]

        settings = CloudSettings(idle_stop_min=0, daily_budget_usd=0.000001)
        await client.act(pod.id, "start")
        other = await client.create(PodRecipe(), "second")
        while watch.today_usd <= settings.daily_budget_usd:
            await asyncio.sleep(0.05)
            await watch.tick()
        assert [p.status for p in await client.pods()] == ["EXITED", "EXITED"]
        assert said[-1].startswith("daily budget $0.00 reached") and "idle-pod, second" in said[-1]
        assert watch.cost_per_h == pytest.approx(0.44 * 2)  # as read before they were stopped
        assert other.id in {p.id for p in watch.pods}


def test_a_proxy_form_that_makes_no_address_joins_nothing() -> None:
    pod = Pod(
        "not-a-port", "p", "RUNNING", "NVIDIA H200", 1, 3.59, 60, (4,), ("stop",), ("8188/http",)
    )
    assert with_pods(FleetConfig(), [pod], "http://127.0.0.1:{pod}").workers == ()


@pytest.mark.asyncio
async def test_the_elastic_policy_starts_pods_while_the_queue_waits_too_long(
    runpod: SimRunpod,
) -> None:
    from app.core.cloud import CloudSettings
    from app.services.cloud_watch import CloudWatch

    said: list[str] = []
    wait = {"now": (240, 18 * 60.0)}
    settings = CloudSettings(idle_stop_min=0, elastic=True, elastic_wait_min=10, elastic_max_pods=2)
    async with aiohttp.ClientSession() as session:
        client = RunpodClient(session, KEY, runpod.url)
        stopped = await client.create(PodRecipe(), "kept-pod")
        await client.act(stopped.id, "stop")
        watch = CloudWatch(lambda: client, lambda: settings, lambda pods: None, lambda pod: True,
                           said.append, queue_wait=lambda: wait["now"])  # fmt: skip
        await watch.tick()
        assert said == ["started kept-pod: 240 items queued, 18 min expected"]
        await watch.tick()  # it is not up yet: nothing more
        assert len(said) == 1
        while (await client.pod(stopped.id)).status != "RUNNING":
            await asyncio.sleep(0.05)
        await watch.tick()  # still too long a wait, none stopped: one is rented
        assert said[-1].startswith("rented comfyfleet-") and said[-1].endswith(
            "(NVIDIA GeForce RTX 4090, $0.44/h): 240 items queued, 18 min expected"
        )
        assert len(await client.pods()) == 2
        while any(p.status != "RUNNING" for p in await client.pods()):
            await asyncio.sleep(0.05)
        await watch.tick()  # two billing: the maximum
        wait["now"] = (3, 60.0)
        await watch.tick()  # a short wait: nothing either
        assert len(said) == 2 and len(await client.pods()) == 2
