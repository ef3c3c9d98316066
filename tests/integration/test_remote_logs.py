"""A ComfyUI's own log over its API, on each simulated version: its lines so far, then each new
one live (0.38's broadcast asset scans on the same socket are none of the log's business)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from app.services.remote_logs import RemoteLog
from app.sim.fleet import SimInstance
from tests.conftest import RECORDINGS
from tests.integration.sim_client import post_json


@pytest.mark.asyncio
async def test_a_workers_log_is_followed_live(sim: SimInstance) -> None:
    lines: list[str] = []
    states: list[str] = []
    prompt = json.loads((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())
    async with aiohttp.ClientSession() as session:
        follower = asyncio.create_task(
            RemoteLog(session, sim.url, lines.extend, states.append).follow()
        )
        try:
            async with asyncio.timeout(30):
                while "live" not in states:
                    await asyncio.sleep(0.02)
                assert any(line.startswith("To see the GUI go to") for line in lines)
                async with session.get(f"{sim.url}/object_info") as info:  # (0.38: a scan)
                    await info.read()
                assert (await post_json(session, f"{sim.url}/prompt", {"prompt": prompt}))[0] == 200
                while not any(line.startswith("Prompt executed in") for line in lines):
                    await asyncio.sleep(0.02)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    assert "got prompt" in lines and states == ["live"]
