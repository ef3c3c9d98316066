"""What an instance holds of ours, and stopping it, each version's way: the jobs API on 0.38,
/queue + /history + /interrupt on 0.3.64; the same answers either way."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from app.services.instance_jobs import InstanceJobs, Where
from app.services.queue_lane import history_outcome
from app.sim.fleet import SimInstance
from tests.conftest import RECORDINGS
from tests.integration.sim_client import post_json

pytestmark = pytest.mark.asyncio


def _traced(paths: list[str]) -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    async def started(_: Any, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        paths.append(f"{params.method} {params.url.path}")

    trace.on_request_start.append(started)
    return trace


async def _until(jobs: InstanceJobs, prompt_id: str, where: Where) -> Any:
    for _ in range(600):
        place = (await jobs.places([prompt_id]))[prompt_id]
        if place.where is where:
            return place
        await asyncio.sleep(0.05)
    raise AssertionError(f"{prompt_id} never {where}")


async def test_prompts_are_found_and_stopped_through_the_versions_own_routes(
    sim_factory: Callable[..., SimInstance], comfyui: str
) -> None:
    slow = sim_factory("slow", args=["--sim-time-scale", "20"])
    workflow = json.loads((RECORDINGS / "workflows" / "workflow_slow.json").read_text())
    paths: list[str] = []
    async with aiohttp.ClientSession(trace_configs=[_traced(paths)]) as session:
        jobs = await InstanceJobs.detect(session, slow.url)
        assert jobs.jobs_api is (comfyui == "0.38")
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for prompt_id in ids:
            body = {"prompt": workflow, "prompt_id": prompt_id}
            assert (await post_json(session, f"{slow.url}/prompt", body))[0] == 200
        await _until(jobs, ids[0], Where.RUNNING)
        paths.clear()
        unheard = str(uuid.uuid4())
        places = await jobs.places([*ids, unheard])
        assert [places[p].where for p in (*ids, unheard)] == [
            Where.RUNNING,
            Where.WAITING,
            Where.WAITING,
            Where.UNKNOWN,
        ]
        assert await jobs.cancel([ids[1], unheard]) == {
            ids[1]: Where.WAITING,
            unheard: Where.UNKNOWN,
        }
        assert await jobs.cancel([ids[0]]) == {ids[0]: Where.RUNNING}
        ended = await _until(jobs, ids[0], Where.ENDED)
        assert (await jobs.places([ids[1]]))[ids[1]].where is Where.UNKNOWN  # taken out
        await _until(jobs, ids[2], Where.RUNNING)
        await jobs.cancel([ids[2]])
        await _until(jobs, ids[2], Where.ENDED)
    outcome = history_outcome(ended.entry, ids[0])
    assert outcome.interrupted and not outcome.ok
    routes = {path.split()[0] + " " + path.split()[1].split("/")[1] for path in paths}
    if comfyui == "0.38":
        assert routes == {"GET api", "POST api"}, paths  # /api/jobs/{id}, …/cancel
    else:
        assert routes == {"GET queue", "POST queue", "POST interrupt", "GET history"}, paths
