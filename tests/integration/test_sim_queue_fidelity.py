"""What the fleet queue relies on in ComfyUI, as the simulator does it:
- POST /prompt keeps a prompt_id the client chose (ComfyUI 0.3.64 server.py:
  `prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))`), and extra_data stays with it;
- one websocket per client id (server.py websocket_handler: a new connection with an id in use
  pops the old socket; the `finally` of any socket's handler pops the id, so a newer socket
  that took it over hears nothing more);
- ComfyUI-Distributed 1.4.4's load_balance: one candidate runs the whole job, idle ones in
  turn (api/orchestration/dispatch.py select_least_busy_worker), the master a candidate too.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from app.sim.fleet import SimInstance, http_json
from tests.conftest import RECORDINGS
from tests.waiting import wait_until


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


def test_a_chosen_prompt_id_is_kept_with_its_extra_data(
    sim_factory: Callable[..., SimInstance],
) -> None:
    sim = sim_factory("sim")
    chosen = str(uuid.uuid4())
    workflow = json.loads((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())
    answer = post(
        f"{sim.url}/prompt", {"prompt": workflow, "prompt_id": chosen, "extra_data": {"tag": 7}}
    )
    assert answer["prompt_id"] == chosen
    wait_until(lambda: chosen in http_json(f"{sim.url}/history/{chosen}"))
    assert http_json(f"{sim.url}/history/{chosen}")[chosen]["prompt"][3]["tag"] == 7


def test_load_balance_gives_each_whole_run_to_one_idle_candidate_in_turn(
    sim_factory: Callable[..., SimInstance],
) -> None:
    master, w1, w2 = sim_factory("master"), sim_factory("w1"), sim_factory("w2")
    for number, worker in enumerate((w1, w2)):
        post(
            f"{master.url}/distributed/config/update_worker",
            {
                "worker_id": f"w{number + 1}",
                "name": f"w{number + 1}",
                "host": "127.0.0.1",
                "port": worker.port,
                "cuda_device": None,
                "enabled": True,
            },
        )
    workflow = json.loads((RECORDINGS / "workflows" / "workflow_distributed_lb.json").read_text())
    ran = []
    for run in range(3):
        answer = post(
            f"{master.url}/distributed/queue",
            {"prompt": workflow, "client_id": f"c{run}", "enabled_worker_ids": ["w1", "w2"]},
        )
        prompt_id = answer["prompt_id"]
        wait_until(lambda p=prompt_id: p in http_json(f"{master.url}/history/{p}"))  # type: ignore[misc]
        delegated = sum(r[0] for r in ran) + answer["worker_count"]
        # a worker's own history entry may land just after the master's (seen on a busy machine)
        wait_until(
            lambda d=delegated: (
                len(http_json(f"{w1.url}/history"))  # type: ignore[misc]
                + len(http_json(f"{w2.url}/history"))
                >= d
            )
        )
        ran.append(
            (
                answer["worker_count"],
                len(http_json(f"{w1.url}/history")),
                len(http_json(f"{w2.url}/history")),
            )
        )
    # all idle each time: w1, then w2, then the master alone — one image per run
    assert ran == [(1, 1, 0), (1, 1, 1), (0, 1, 1)]


@pytest.mark.asyncio
async def test_one_socket_per_client_id_and_a_closed_one_takes_the_id_with_it(
    sim_factory: Callable[..., SimInstance],
) -> None:
    sim = sim_factory("ws")
    workflow = json.loads((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())

    async def heard(socket: aiohttp.ClientWebSocketResponse, prompt_id: str) -> bool:
        try:
            while True:
                message = await asyncio.wait_for(socket.receive(), 3)
                data = json.loads(message.data) if message.type == aiohttp.WSMsgType.TEXT else {}
                if data.get("type") == "execution_success":
                    return bool(data["data"]["prompt_id"] == prompt_id)
        except TimeoutError:
            return False

    async with aiohttp.ClientSession() as session:
        first = await session.ws_connect(f"{sim.url}/ws?clientId=same")
        second = await session.ws_connect(f"{sim.url}/ws?clientId=same")
        one = (
            await asyncio.to_thread(
                post, f"{sim.url}/prompt", {"prompt": workflow, "client_id": "same"}
            )
        )["prompt_id"]
        assert await heard(second, one) and not await heard(first, one)
        await first.close()  # its handler's cleanup drops the id the second one holds
        two = (
            await asyncio.to_thread(
                post, f"{sim.url}/prompt", {"prompt": workflow, "client_id": "same"}
            )
        )["prompt_id"]
        assert not await heard(second, two)
        wait_until(lambda: two in http_json(f"{sim.url}/history/{two}"))
        await second.close()
