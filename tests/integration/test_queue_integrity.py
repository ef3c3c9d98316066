"""The fleet queue never takes one item's image for another's, and never leaves half a file.

ComfyUI names a saved image from the files already in its output folder, once, before the slow
PNG write (folder_paths.get_save_image_path, 0.3.64): two instances saving into one folder at the
same moment write the same name, and the later file replaces the earlier. Seen on the real
ComfyUI with a master and a local worker of one install (issue 23)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from app.core.config import AppSettings, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.image_meta import embedded_texts
from app.core.queue import ItemState
from app.core.runs import Participant
from app.services.launch_plan import plan_launches
from app.services.queue_db import Item
from app.services.queue_lane import ImageMixUp, Lane, collect
from app.services.queue_manifest import manifest_path
from app.services.queue_store import QueueStore
from app.services.supervisor import InstanceState, Supervisor
from app.sim.fleet import SimInstance, create_sim_install, free_port, http_json
from tests.integration.test_queue import add, dispatching, ended, nomodel, participants
from tests.integration.test_supervisor import Watcher, supervisor  # noqa: F401 (a fixture)
from tests.waiting import until

pytestmark = pytest.mark.asyncio


def seed_in(path: Path) -> int:
    """The seed of the prompt an image was made from, as ComfyUI embeds it."""
    prompt = json.loads(embedded_texts(path.read_bytes())["prompt"])
    return int(prompt["2"]["inputs"]["seed"])


def assert_every_image_is_its_items(store: QueueStore, job: int, count: int) -> None:
    items = store.items(job)
    assert [i.state for i in items] == [ItemState.DONE] * count
    for item in items:
        (file,) = item.files
        assert seed_in(Path(file)) == item.seed, f"item {item.index} holds another's image"


def history_files(sim: SimInstance, prompt_id: str) -> list[str]:
    outputs = http_json(f"{sim.url}/history/{prompt_id}")[prompt_id]["outputs"]
    return [image["filename"] for output in outputs.values() for image in output["images"]]


def own_database(tmp_path: Path) -> list[str]:
    """A second instance of one base folder needs a database of its own on 0.38 (one is held
    by one process); 0.3.64 takes the flag too."""
    return ["--database-url", f"sqlite:///{tmp_path / 'second.db'}"]


async def test_two_instances_saving_into_one_folder_write_the_same_name(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    """The simulator does as ComfyUI: one shared output folder, counter-based names."""
    slow = ["--sim-time-scale", "5"]
    first = sim_factory("install", args=slow)
    second = sim_factory("install", args=[*slow, *own_database(tmp_path)])  # one output/
    for attempt in range(5):
        ids = []
        for number, sim in enumerate((first, second)):
            prompt = copy.deepcopy(nomodel())
            prompt["2"]["inputs"]["seed"] = 100 * attempt + number
            ids.append(http_json(f"{sim.url}/prompt", {"prompt": prompt})["prompt_id"])
        pairs = list(zip((first, second), ids, strict=True))
        await until(lambda: all(http_json(f"{s.url}/history/{i}") for s, i in pairs))  # noqa: B023
        names = [history_files(sim, i) for sim, i in zip((first, second), ids, strict=True)]
        if names[0] == names[1]:
            break
    assert names[0] == names[1], "never saved at the same moment"
    (shared,) = names[0]
    kept = seed_in(tmp_path / "install" / "output" / shared)
    assert kept in (100 * attempt, 100 * attempt + 1)  # one image replaced the other


async def test_a_master_and_a_worker_of_one_install_never_mix_up_their_images(
    supervisor: Supervisor,  # noqa: F811
    tmp_path: Path,
) -> None:
    install = create_sim_install(tmp_path / "ComfyUI")
    config = FleetConfig(
        master=MasterConfig(comfyui_dir=str(install), port=free_port(), gpu="cpu"),
        workers=(WorkerConfig("w1", WorkerKind.LOCAL, port=free_port(), gpu="cpu"),),
        app=AppSettings(ready_timeout_s=30),
    )
    watcher = Watcher(supervisor)
    for spec in plan_launches(config, tmp_path / "data").specs.values():
        await supervisor.start(spec)
    await watcher.until(
        lambda: watcher.state("master") is watcher.state("w1") is InstanceState.READY
    )
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 16, seed=500)
    lanes = [
        Participant("master", f"http://127.0.0.1:{config.master.port}"),
        Participant("w1", f"http://127.0.0.1:{config.workers[0].port}"),
    ]
    async with dispatching(store, lanes):
        await until(lambda: ended(store, job), timeout=90)
    assert_every_image_is_its_items(store, job, 16)
    assert {i.participant for i in store.items(job)} == {"master", "w1"}
    assert any((tmp_path / "data").rglob("*.png"))  # the worker saved into its own folder
    assert not any(i.error for i in store.items(job))  # and nothing had to run again


async def test_instances_sharing_a_folder_save_each_item_under_its_own_name(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    """Instances the app did not launch may still share a folder: each item's saving nodes get
    a filename_prefix of its own, so no two items' files can have one name."""
    first, second = sim_factory("install"), sim_factory("install", args=own_database(tmp_path))
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 16, seed=700)
    async with dispatching(store, participants(("a", first), ("b", second))):
        await until(lambda: ended(store, job), timeout=90)
    assert_every_image_is_its_items(store, job, 16)


async def test_an_image_replaced_after_it_was_made_is_not_taken_for_its_item(
    sim_factory: Callable[..., SimInstance], tmp_path: Path
) -> None:
    """Whatever replaced it (a save node without a filename_prefix, another program), the file
    served under an item's name must carry the item's own prompt."""
    sim = sim_factory("sim")
    prompts = []
    for seed in (1, 2):
        prompt = copy.deepcopy(nomodel())
        prompt["2"]["inputs"]["seed"] = seed
        prompt_id = http_json(f"{sim.url}/prompt", {"prompt": prompt})["prompt_id"]
        await until(lambda: bool(http_json(f"{sim.url}/history/{prompt_id}")))  # noqa: B023
        prompts.append((prompt_id, prompt))
    output = tmp_path / "sim" / "output"
    (first,) = history_files(sim, prompts[0][0])
    (second,) = history_files(sim, prompts[1][0])
    (output / first).write_bytes((output / second).read_bytes())  # seed 2's pixels as seed 1's
    item = Item(1, 1, 0, 1, (), ItemState.RUNNING, "sim", prompts[0][0])
    entry = http_json(f"{sim.url}/history/{prompts[0][0]}")[prompts[0][0]]
    async with aiohttp.ClientSession() as session:
        lane = Lane(Participant("sim", sim.url))
        with pytest.raises(ImageMixUp, match=f"{first} on sim holds another prompt's image"):
            await collect(session, lane, item, entry, tmp_path / "out", prompts[0][1])
        assert not (tmp_path / "out").exists()
        assert await collect(session, lane, item, entry, tmp_path / "out", prompts[1][1])


async def test_a_full_disk_pauses_the_job_says_so_once_and_leaves_no_half_file(
    sim_factory: Callable[..., SimInstance], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC in the middle of a write: no truncated file under a final name, the item waits
    again with no try counted, the job is paused with the reason; resumed, it finishes."""
    import app.services.storage as storage

    real_fdopen = os.fdopen
    full = {"on": True}

    class FullDisk:
        def __init__(self, handle: object) -> None:
            self._handle = handle

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._handle.__exit__(*exc)  # type: ignore[attr-defined]

        def write(self, data: bytes) -> int:
            self._handle.write(data[: len(data) // 2])  # type: ignore[attr-defined]
            raise OSError(28, "No space left on device")

    def fdopen(fd: int, mode: str = "r", *args: object, **kw: object) -> object:
        handle = real_fdopen(fd, mode, *args, **kw)  # type: ignore[call-overload]
        return FullDisk(handle) if full["on"] and "b" in mode else handle

    monkeypatch.setattr(storage.os, "fdopen", fdopen)
    sim = sim_factory("sim")
    store = QueueStore(tmp_path / "queue.db")
    job = add(store, tmp_path, 3, seed=1)
    out = Path(store.job(job).out_dir)
    async with dispatching(store, participants(("sim", sim))) as dispatcher:
        await until(lambda: store.job_brief(job).paused, timeout=30)
        await until(lambda: not any(i.state is ItemState.SENT for i in store.items(job)))
        assert not [p for p in out.rglob("*") if p.is_file()]  # nothing half-written, anywhere
        note = store.job(job).note or ""
        assert note.startswith("paused: cannot save into ") and "No space left" in note
        full["on"] = False
        store.set_paused(False, job)
        dispatcher.store_changed()
        await until(lambda: ended(store, job), timeout=30)
    assert_every_image_is_its_items(store, job, 3)
    assert all(i.attempts == 0 for i in store.items(job))  # the disk's fault, not the instance's
    assert store.job(job).note is None
    assert manifest_path(store.job(job)).is_file()
