"""The simulator as ComfyUI 0.38 (`--sim-comfyui-version 0.38`) against recordings/comfyui-0.38/
(read from 0.38's sources: its command line rebuilt and run, its answers read). Same checks as
for 0.3.64: every recorded bad launch refused the same way, every recorded good one parsed to
the recorded values, /system_stats in the recorded shape and key order, POST /prompt's prompt_id
check with the recorded body."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.sim import comfy_cli
from app.sim.fleet import REPO_ROOT, SimInstance, sim_command
from tests.conftest import RECORDINGS
from tests.integration.sim_client import post_json
from tests.integration.test_sim_fidelity import shape_differences

HERE = RECORDINGS / "comfyui-0.38"
VERSION = ["--sim-comfyui-version", "0.38"]


def _launches() -> dict[str, Any]:
    return dict(json.loads((HERE / "launch_errors.json").read_text(encoding="utf-8")))


def test_the_simulators_038_parser_is_the_recorded_one() -> None:
    recorded = json.loads((HERE / "cli_args.json").read_text(encoding="utf-8"))
    assert comfy_cli.recorded_parser("0.38") == recorded


@pytest.mark.parametrize(
    "case", _launches()["argparse_failures"], ids=lambda c: " ".join(c["argv_after_main_py"][2:])
)
def test_every_recorded_038_launch_error_is_refused_the_same_way(
    case: dict[str, Any], tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COMFYFLEET_SIM_ROOT": str(tmp_path)}
    done = subprocess.run(
        [*sim_command(), *VERSION, *case["argv_after_main_py"]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=30,
    )
    assert done.returncode == case["exit_code"], done.stderr
    assert done.stderr.splitlines()[-1] == case["last_line"]
    assert done.stderr.startswith("usage: main.py [-h]") is case["stderr_starts_with_usage"]


@pytest.mark.parametrize(
    "case", _launches()["argparse_accepts"], ids=lambda c: " ".join(c["argv_after_main_py"][2:])
)
def test_every_recorded_038_launch_that_parses_gives_the_recorded_values(
    case: dict[str, Any],
) -> None:
    args = comfy_cli.parse(case["argv_after_main_py"], "0.38")
    shown = " ".join(
        f"{name}={getattr(args, name)!r}"
        for name in ("cuda_device", "verbose", "cache_ram", "async_offload", "offline")
    )
    shown += f" disable_partner_nodes={args.disable_partner_nodes!r}"
    assert shown == case["parsed"]


def test_0364_flags_removed_in_038_still_work_on_0364() -> None:
    assert comfy_cli.parse(["--normalvram"]).normalvram is True


@pytest.fixture
def sim038(sim_factory: Callable[..., SimInstance]) -> SimInstance:
    return sim_factory("sim038", args=[*VERSION, "--cpu"])


@pytest.mark.asyncio
async def test_system_stats_has_the_038_shape_and_key_order(sim038: SimInstance) -> None:
    recorded = json.loads((HERE / "system_stats.json").read_text(encoding="utf-8"))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sim038.url}/system_stats") as response,
    ):
        stats = await response.json()
    assert shape_differences(recorded["example_cpu"], stats) == []
    assert list(stats["system"]) == recorded["key_order_system"]
    assert stats["system"]["os"] in ("linux", "win32", "darwin")
    assert stats["system"]["comfyui_version"].startswith("0.38")


@pytest.mark.asyncio
async def test_a_prompt_id_that_is_not_a_canonical_uuid_is_refused(sim038: SimInstance) -> None:
    routes = json.loads((HERE / "routes.json").read_text(encoding="utf-8"))
    answers = routes["details"]["POST /prompt"]["responses"]
    refused = next(
        a["body"] for a in answers if a.get("case", "").startswith("prompt_id not a canonical")
    )
    prompt = json.loads((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())
    good = str(uuid.uuid4())
    async with aiohttp.ClientSession() as session:
        for chosen in ("job-1", good.upper(), good.replace("-", ""), 7):
            body = {"prompt": prompt, "prompt_id": chosen}
            assert await post_json(session, f"{sim038.url}/prompt", body) == (400, refused)
        status, answer = await post_json(
            session, f"{sim038.url}/prompt", {"prompt": prompt, "prompt_id": good}
        )
    assert status == 200 and answer["prompt_id"] == good
