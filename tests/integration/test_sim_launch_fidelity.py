"""The simulator's command line against ComfyUI 0.3.64's, as recorded in recordings/cli/.

Every recorded bad launch is replayed against a real simulator process: same exit code, usage
first, the same reason as the last line. A launch the real program refuses must never start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.sim import comfy_cli
from app.sim.fleet import (
    REPO_ROOT,
    SimInstance,
    create_sim_install,
    free_port,
    http_json,
    sim_command,
)
from tests.conftest import RECORDINGS

pytestmark = pytest.mark.comfyui("0.3.64")  # against that version's recordings

LAUNCH_ERRORS = RECORDINGS / "cli" / "launch_errors.json"


def _cases() -> list[dict[str, Any]]:
    return list(json.loads(LAUNCH_ERRORS.read_text(encoding="utf-8"))["argparse_failures"])


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COMFYFLEET_SIM_ROOT": str(cwd)}
    return subprocess.run(
        [*sim_command(), *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=30
    )


def test_the_simulators_parser_is_the_recorded_one(recordings: Path) -> None:
    recorded = json.loads((recordings / "cli" / "cli_args.json").read_text(encoding="utf-8"))
    assert comfy_cli.recorded_parser() == recorded


@pytest.mark.parametrize("case", _cases(), ids=lambda c: " ".join(c["argv_after_main_py"][2:]))
def test_every_recorded_launch_error_is_refused_the_same_way(
    case: dict[str, Any], tmp_path: Path
) -> None:
    done = _run(case["argv_after_main_py"], tmp_path)
    assert done.returncode == case["exit_code"]
    assert done.stderr.splitlines()[-1] == case["last_line"]
    assert done.stderr.startswith("usage: main.py [-h]") is case["stderr_starts_with_usage"]
    assert "Starting server" not in done.stdout  # refused before anything started


def test_an_existing_user_directory_is_accepted(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    args = ["--cpu", "--disable-auto-launch", "--user-directory", str(user), "--help"]
    done = _run(args, tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("usage: main.py [-h]")


def test_help_answers_at_once_with_every_recorded_flag(tmp_path: Path) -> None:
    install = create_sim_install(tmp_path / "install")
    done = subprocess.run(
        [sys.executable, str(install / "main.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    usage = done.stdout.split("\n\n")[0]
    assert [
        o["flags"][0] for o in comfy_cli.recorded_parser()["options"] if o["flags"][0] not in usage
    ] == []


def test_the_app_as_python_of_a_simulated_install_runs_its_main_py(tmp_path: Path) -> None:
    """The bundle has no Python of its own: the demo's simulated install names the bundle
    as its Python, so `comfy-fleet main.py …` in that folder must be the simulator, and in any
    other folder just a bad command."""
    install = create_sim_install(tmp_path / "install")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "main.py").write_text("print('not ours')\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    runs = {
        folder.name: subprocess.run(
            [sys.executable, "-m", "app", "main.py", "--bogus"],
            capture_output=True,
            text=True,
            cwd=folder,
            env=env,
            timeout=30,
        )
        for folder in (install, elsewhere)
    }
    assert runs["install"].returncode == 2
    refused = runs["install"].stderr.splitlines()[-1]
    assert refused == "main.py: error: unrecognized arguments: --bogus"
    assert runs["elsewhere"].returncode == 2 and "usage: comfy-fleet" in runs["elsewhere"].stderr


def test_simulators_side_by_side_keep_their_own_distributed_config(tmp_path: Path) -> None:
    """gpu_config.json lives in each instance's own install, never in the folder it was
    started from (a checkout, say), and two instances never share it."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "COMFYFLEET_SIM_ROOT"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    sims = []
    try:
        for _ in range(2):
            port = free_port()
            log = (tmp_path / f"sim-{port}.log").open("wb")
            process = subprocess.Popen(
                [*sim_command(), "--port", str(port), "--cpu"],
                cwd=checkout,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            sims.append(SimInstance(port, process, Path(log.name)))
        for sim in sims:
            sim.wait_ready()
        worker = {"worker_id": "w1", "name": "w1", "port": 8189, "cuda_device": None}
        http_json(f"{sims[0].url}/distributed/config/update_worker", worker)
        assert [w["id"] for w in http_json(f"{sims[0].url}/distributed/config")["workers"]] == [
            "w1"
        ]
        assert http_json(f"{sims[1].url}/distributed/config")["workers"] == []
        assert list(checkout.iterdir()) == []
    finally:
        for sim in sims:
            sim.stop()
