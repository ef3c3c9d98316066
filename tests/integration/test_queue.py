"""The fleet queue on simulated fleets: real simulator processes, a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.core.queue import MAX_ATTEMPTS, ItemState, JobSpec, expand
from app.core.runs import Participant
from app.core.workflow import PreflightResult, Workflow, load_workflow
from app.services.dispatcher import Dispatcher
from app.services.host import here, user_at_host
from app.services.queue_manifest import manifest_path
from app.services.queue_service import fleet_session
from app.services.queue_store import QueueStore
from app.sim.fleet import REPO_ROOT, SimInstance, http_json
from tests.conftest import RECORDINGS
from tests.waiting import until

pytestmark = pytest.mark.asyncio
NOMODEL = RECORDINGS / "workflows" / "workflow_nomodel.json"


def nomodel() -> dict[str, Any]:
    return load_workflow(NOMODEL.read_text(encoding="utf-8"))


def add(store: QueueStore, tmp_path: Path, count: int, **spec: Any) -> int:
    job = JobSpec(spec.pop("name", "noise"), spec.pop("workflow", None) or nomodel(), count, **spec)
    return store.add_job(job, expand(job), tmp_path / "out")


def participants(*sims: tuple[str, SimInstance]) -> list[Participant]:
    return [Participant(name, sim.url) for name, sim in sims]


@contextlib.asynccontextmanager
async def dispatching(
    store: QueueStore, lanes: list[Participant], **kw: Any
) -> AsyncIterator[Dispatcher]:
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(store, session, lanes, **kw)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            yield dispatcher
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


def ended(store: QueueStore, job: int) -> bool:
    return store.job_brief(job).ended is not None


async def test_a_job_runs_every_seed_once_and_its_files_are_where_the_manifest_says(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    fast, slow = sim_factory("fast"), sim_factory("slow", args=["--sim-time-scale", "3"])
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 12, seed=1000)
    async with dispatching(store, participants(("fast", fast), ("slow", slow))):
        await until(lambda: ended(store, job), timeout=60)
    items = store.items(job)
    assert [i.state for i in items] == [ItemState.DONE] * 12
    assert sorted(i.seed for i in items) == list(range(1000, 1012))
    made = json.loads(manifest_path(store.job(job)).read_text(encoding="utf-8"))
    for entry in made["items"]:
        folder = manifest_path(store.job(job)).parent
        assert [(folder / f).is_file() for f in entry["files"]] == [True]
        assert f"seed{entry['seed']}_{entry['participant']}" in entry["files"][0]
    # every item ran exactly once, on the instance the store names, with its seed
    for name, sim in (("fast", fast), ("slow", slow)):
        history = http_json(f"{sim.url}/history")
        mine = [i for i in items if i.participant == name]
        assert sorted(history) == sorted(i.prompt_id for i in mine)
        for item in mine:
            prompt = history[item.prompt_id]["prompt"][2]
            assert prompt["2"]["inputs"]["seed"] == item.seed
    counts = {n: sum(i.participant == n for i in items) for n in ("fast", "slow")}
    assert counts["fast"] > counts["slow"] > 0  # both worked, the fast one more


async def test_a_worker_killed_mid_item_has_its_items_finished_elsewhere(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    steady = sim_factory("steady")
    doomed = sim_factory("doomed", args=["--sim-time-scale", "4"])
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 8)
    async with dispatching(store, participants(("steady", steady), ("doomed", doomed))):
        await until(
            lambda: any(
                i.participant == "doomed" and i.state is ItemState.RUNNING for i in store.items(job)
            )
        )
        doomed.process.kill()
        await until(lambda: ended(store, job), timeout=60)
    items = store.items(job)
    assert [i.state for i in items] == [ItemState.DONE] * 8
    assert any(i.attempts == 1 for i in items)  # the one it was running came back
    assert all(i.participant == "steady" for i in items if i.attempts)


async def test_an_item_lost_too_often_fails_and_its_job_still_ends_with_a_manifest(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    slow = sim_factory("slow", args=["--sim-time-scale", "20"])
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 1)
    interrupted: set[str] = set()

    def interrupt_each_try() -> bool:
        item = store.items(job)[0]
        if item.state is ItemState.RUNNING and item.prompt_id not in interrupted:
            interrupted.add(str(item.prompt_id))
            http_json(f"{slow.url}/interrupt", {})
        return ended(store, job)

    async with dispatching(store, participants(("slow", slow))):
        await until(interrupt_each_try, timeout=60)
    (item,) = store.items(job)
    assert item.state is ItemState.FAILED and len(interrupted) == MAX_ATTEMPTS
    assert item.error == f"lost {MAX_ATTEMPTS} times; last: interrupted on slow"
    assert json.loads(manifest_path(store.job(job)).read_text())["items"][0]["state"] == "failed"


async def test_a_worker_lacking_the_model_gets_none_of_the_jobs_items(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    from app.core.config import FleetConfig
    from app.services.job_service import JobService

    has = sim_factory("has")
    lacks = sim_factory("lacks", env={"COMFYFLEET_SIM_MODELS": '{"upscale_models": []}'})
    workflow = load_workflow((RECORDINGS / "workflows" / "workflow_progress.json").read_text())
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 4, workflow=workflow)
    async with aiohttp.ClientSession() as session:
        service = JobService(session, FleetConfig())
        async with dispatching(
            store, participants(("has", has), ("lacks", lacks)), preflight=service.preflight_one
        ) as dispatcher:
            await until(lambda: ended(store, job), timeout=60)
            assert "tiny_compact_x2" in dispatcher.lanes["lacks"].excluded[job]
    assert {i.participant for i in store.items(job)} == {"has"}
    assert http_json(f"{lacks.url}/history") == {}


async def test_a_preflight_that_could_not_ask_is_asked_again_not_held_against_it(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    flaky = sim_factory("flaky")
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 4)
    asked: list[str] = []

    async def preflight(workflow: Workflow, participant: Participant) -> PreflightResult:
        asked.append(participant.name)  # the first time its answer was a one-off 500
        error = "could not ask it: HTTP 500 from /object_info" if len(asked) == 1 else ""
        return PreflightResult(participant.name, error=error)

    async with dispatching(store, participants(("flaky", flaky)), preflight=preflight):
        await until(lambda: ended(store, job), timeout=60)
    assert len(asked) == 2
    assert [(i.state, i.participant) for i in store.items(job)] == [(ItemState.DONE, "flaky")] * 4


async def test_a_broken_workflow_fails_each_item_once_with_the_nodes_reason(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    a, b = sim_factory("a"), sim_factory("b")
    broken = load_workflow((RECORDINGS / "workflows" / "workflow_runtime_error.json").read_text())
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 3, workflow=broken)
    async with dispatching(store, participants(("a", a), ("b", b))):
        await until(lambda: ended(store, job), timeout=60)
    items = store.items(job)
    assert [i.state for i in items] == [ItemState.FAILED] * 3
    assert all(i.attempts == 0 and "ImageBlur" in (i.error or "") for i in items)
    ran = len(http_json(f"{a.url}/history")) + len(http_json(f"{b.url}/history"))
    assert ran == 3  # once each, not once per GPU


async def test_cancel_empties_every_participants_queue_of_that_job(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    a, b = (
        sim_factory("a", args=["--sim-time-scale", "20"]),
        sim_factory("b", args=["--sim-time-scale", "20"]),
    )
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 10)
    async with dispatching(store, participants(("a", a), ("b", b))):
        await until(lambda: sum(i.state is ItemState.RUNNING for i in store.items(job)) == 2)
        QueueStore(store.path).cancel(job)  # as `queue cancel` does, from another process
        await until(lambda: ended(store, job), timeout=30)
    for sim in (a, b):
        queue = http_json(f"{sim.url}/queue")
        assert queue == {"queue_running": [], "queue_pending": []}
    states = [i.state for i in store.items(job)]
    # the two running were interrupted (or had reached their last node, which then finishes,
    # as in ComfyUI); the two waiting in the instances' queues were deleted and never ran
    assert (
        set(states) <= {ItemState.CANCELLED, ItemState.DONE} and states.count(ItemState.DONE) <= 2
    )
    assert [len(http_json(f"{sim.url}/history")) for sim in (a, b)] == [1, 1]


async def test_two_dispatchers_the_second_refuses(tmp_path: Path) -> None:
    from app.services.queue_lock import DispatcherLock

    first, second = DispatcherLock(tmp_path / "queue.lock"), DispatcherLock(tmp_path / "queue.lock")
    assert first.acquire("the window")
    assert not second.acquire("queue run")
    assert second.holder() == f"the window on {here()}"
    first.release()
    assert second.holder() is None and second.acquire("queue run")
    second.release()


def cli(
    config: Path, *words: str, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config), *words],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        **kw,
    )


def cli_done(config: Path, *words: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = cli(config, *words, env=env)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def runs_per_item(sims: Iterable[SimInstance], job: int) -> dict[int, int]:
    """How often each of the job's items completed, from every instance's own history."""
    ran: dict[int, int] = {}
    for sim in sims:
        for entry in http_json(f"{sim.url}/history").values():
            tag = entry["prompt"][3].get("comfyfleet", {})
            if tag.get("job") == job and entry["status"]["completed"]:
                ran[tag["item"]] = ran.get(tag["item"], 0) + 1
    return ran


def fleet_file(tmp_path: Path, master: SimInstance, **workers: SimInstance) -> Path:
    from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
    from app.services.storage import ConfigStore

    config = tmp_path / "fleet.json"
    ConfigStore(config).save(
        FleetConfig(
            master=MasterConfig(port=master.port),
            workers=tuple(
                WorkerConfig(name, WorkerKind.REMOTE, port=sim.port)
                for name, sim in workers.items()
            ),
        )
    )
    return config


async def test_a_dispatcher_killed_mid_job_loses_nothing_and_runs_nothing_twice(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    sims = {n: sim_factory(n, args=["--sim-time-scale", "3"]) for n in ("master", "w1", "w2")}
    config = fleet_file(tmp_path, sims["master"], w1=sims["w1"], w2=sims["w2"])
    code, out, err = cli_done(config, "queue", "add", str(NOMODEL), "--count", "12", "--json")
    assert code == 0 and json.loads(out)["items"] == 12 and json.loads(out)["dispatcher"] is None
    job = json.loads(out)["job"]
    from app.services.paths import resolve_paths
    from app.services.queue_service import QueuePaths

    store = QueueStore(QueuePaths.under(resolve_paths(config).data_dir).db)
    first = cli(config, "queue", "run")
    await until(
        lambda: (
            store.job(job).count(ItemState.DONE) >= 3
            and store.job(job).count(ItemState.SENT, ItemState.RUNNING) >= 3
        ),
        timeout=60,
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    code, out, err = cli_done(config, "queue", "add", str(NOMODEL))  # nobody dispatches now
    assert "no dispatcher runs" in err
    store.cancel(job + 1)  # (that one is not part of this check)
    second = cli(config, "queue", "run")
    try:
        await until(lambda: store.job(job).ended is not None, timeout=90)
    finally:
        second.terminate()
        second.wait(20)
    items = store.items(job)
    assert [i.state for i in items] == [ItemState.DONE] * 12
    assert runs_per_item(sims.values(), job) == {i: 1 for i in range(12)}  # though one died


async def test_a_second_queue_run_waits_naming_the_first_and_takes_over_when_it_stops(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    master = sim_factory("master")
    config = fleet_file(tmp_path, master)
    first = cli(config, "queue", "run")
    second = None
    try:
        assert first.stdout is not None
        assert "dispatching" in first.stdout.readline()
        holder = f"`comfy-fleet queue run` on {user_at_host()} (pid {first.pid})"
        code, out, err = cli_done(config, "queue", "add", str(NOMODEL), "--count", "2")
        assert code == 0 and f"dispatched by {holder}" in err
        second = cli(config, "queue", "run")
        assert second.stdout is not None
        assert "dispatching" in second.stdout.readline()
        assert second.stdout.readline().strip() == f"waiting: the queue is dispatched by {holder}"
        first.terminate()
        first.wait(20)
        assert second.stdout.readline().strip() == "dispatching here now"
        code, out, err = cli_done(config, "queue", "add", str(NOMODEL))
        assert (
            f"dispatched by `comfy-fleet queue run` on {user_at_host()} (pid {second.pid})" in err
        )
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)


async def test_queue_add_takes_a_ui_format_template(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    models = {"COMFYFLEET_SIM_MODELS": '{"checkpoints": ["v1-5-pruned-emaonly-fp16.safetensors"]}'}
    master = sim_factory("master", env=models)
    config = fleet_file(tmp_path, master)
    template = RECORDINGS / "ui_workflows" / "t01_default_txt2img" / "ui.json"
    code, out, err = cli_done(
        config, "queue", "add", str(template), "--count", "3", "--seed", "5", "--json"
    )
    assert code == 0, err
    from app.services.paths import resolve_paths
    from app.services.queue_service import QueuePaths

    store = QueueStore(QueuePaths.under(resolve_paths(config).data_dir).db)
    job = json.loads(out)["job"]
    async with dispatching(store, participants(("master", master))):
        await until(lambda: ended(store, job), timeout=60)
    items = store.items(job)
    assert [(i.state, i.seed) for i in items] == [(ItemState.DONE, s) for s in (5, 6, 7)]
    assert all(Path(f).is_file() for i in items for f in i.files)
    seeds = sorted(
        e["prompt"][2]["3"]["inputs"]["seed"] for e in http_json(f"{master.url}/history").values()
    )
    assert seeds == [5, 6, 7]  # the converted template's KSampler, one seed per item


async def test_the_dispatcher_follows_the_fleet_as_it_changes(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    first = sim_factory("first", args=["--sim-time-scale", "8"])
    joined = sim_factory("joined", args=["--sim-time-scale", "2"])
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 10)
    async with dispatching(store, participants(("first", first))) as dispatcher:
        await until(lambda: any(i.participant == "first" for i in store.items(job)))
        dispatcher.set_participants(participants(("first", first), ("joined", joined)))
        await until(lambda: any(i.participant == "joined" for i in store.items(job)), timeout=30)
        dispatcher.set_participants(participants(("joined", joined)))  # first leaves the fleet
        await until(lambda: ended(store, job), timeout=60)
        assert set(dispatcher.lanes) == {"joined"}
    items = store.items(job)
    assert [i.state for i in items] == [ItemState.DONE] * 10
    assert {i.participant for i in items} <= {"first", "joined"} and any(i.attempts for i in items)
    await until(
        lambda: http_json(f"{first.url}/queue") == {"queue_running": [], "queue_pending": []}
    )


async def test_a_dispatcher_gone_deaf_still_finishes_from_each_instances_history(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    """As in ComfyUI: another socket with the queue's client id takes its events, and when that
    one closes the id is dropped, so the dispatcher's own socket hears nothing any more."""
    sim = sim_factory("deaf", args=["--sim-time-scale", "6"])
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 6)
    async with dispatching(store, participants(("deaf", sim)), audit_s=0.5) as dispatcher:
        await until(lambda: any(i.state is ItemState.RUNNING for i in store.items(job)))
        async with aiohttp.ClientSession() as session:
            other = await session.ws_connect(f"{sim.url}/ws?clientId={store.client_id()}")
            await other.close()  # the id is gone with it: the dispatcher is deaf now
        await until(lambda: ended(store, job), timeout=60)
        assert dispatcher.lanes["deaf"].online  # its socket never closed
    items = store.items(job)
    assert [i.state for i in items] == [ItemState.DONE] * 6
    assert all(i.files and all(Path(f).is_file() for f in i.files) for i in items)
    assert len(http_json(f"{sim.url}/history")) == 6  # each ran once


@pytest.mark.comfyui("0.3.64")  # (it says which version each one is)
async def test_a_mixed_fleet_of_0364_and_038_runs_one_job(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    """0.38 takes only canonical UUIDs as prompt ids: the dispatcher's pass on both versions."""
    old = sim_factory("old", args=["--sim-comfyui-version", "0.3.64"])
    new = sim_factory("new", args=["--sim-comfyui-version", "0.38"])
    assert http_json(f"{new.url}/system_stats")["system"]["comfyui_version"] == "0.38.1"
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 8, seed=1)
    async with dispatching(store, participants(("old", old), ("new", new))):
        await until(lambda: ended(store, job), timeout=60)
    items = store.items(job)
    assert [i.state for i in items] == [ItemState.DONE] * 8
    for name, sim in (("old", old), ("new", new)):
        history = http_json(f"{sim.url}/history")
        assert sorted(history) == sorted(i.prompt_id for i in items if i.participant == name)
        assert history, name


async def test_every_job_says_who_queued_it(tmp_path: Path) -> None:
    """user@host beside each job, in `queue list` and its --json (a shared queue's readers see
    whose job it is)."""
    import getpass
    import socket

    from app.core.config import FleetConfig
    from app.services.storage import ConfigStore

    config = tmp_path / "fleet.json"
    ConfigStore(config).save(FleetConfig())
    assert cli_done(config, "queue", "add", str(NOMODEL), "--count", "2")[0] == 0
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    code, out, _ = cli_done(config, "queue", "list")
    assert code == 0 and out.rstrip().endswith(f"· by {me}")
    code, out, _ = cli_done(config, "queue", "list", "--json")
    assert json.loads(out)["jobs"][0]["queued_by"] == me


@pytest.mark.comfyui("0.3.64")
async def test_a_fleet_of_more_than_a_hundred_comes_online_and_gets_work(tmp_path: Path) -> None:
    """Each participant's socket stays open: aiohttp's pool of 100 would starve the rest."""
    sims = subprocess.Popen(
        [sys.executable, "-m", "app.sim.multi", "110", str(tmp_path / "multi")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert sims.stdout is not None
        ports = json.loads(sims.stdout.readline())["ports"]
        store = QueueStore(tmp_path / "queue.db")
        job = add(store, tmp_path, 220)
        lanes = [Participant(f"i{n}", f"http://127.0.0.1:{p}") for n, p in enumerate(ports)]
        stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
        async with fleet_session(timeout) as session:
            dispatcher = Dispatcher(store, session, lanes)
            task = asyncio.create_task(dispatcher.run(stop))
            try:
                await until(lambda: all(lane.online for lane in dispatcher.status()), timeout=60)
                await until(lambda: store.waiting_count(job) == 0, timeout=60)
                assert {i.participant for i in store.items(job)} == {lane.name for lane in lanes}
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)
    finally:
        sims.terminate()
        sims.wait(30)
