"""Each fault mode of COMFYFLEET_SIM_FAULTS, provoked for real."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import httpx
import pytest

from app.sim.fleet import SimInstance, create_sim_install, free_port, http_json
from tests.integration.sim_client import get_json, listen, post_json, workflow
from tests.integration.test_sim_distributed import register, run_distributed

START_FAILURES = {
    "cuda-oom": "torch.OutOfMemoryError: CUDA out of memory",
    "module-missing": "ModuleNotFoundError: No module named",
    "custom-node": "IMPORT FAILED",
    "cuda-driver": "CUDA driver initialization failed",
    "port-in-use": "address already in use",
}


@pytest.mark.parametrize("kind", sorted(START_FAILURES))
def test_start_failure_exits_with_its_log_line(tmp_path: Path, kind: str) -> None:
    install = create_sim_install(tmp_path / "ComfyUI")
    result = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--port",
            str(free_port()),
            "--enable-cors-header",
            "--disable-auto-launch",
        ],
        cwd=install,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COMFYFLEET_SIM_FAULTS": f"start-fail={kind}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert START_FAILURES[kind] in result.stderr
    assert "To see the GUI" not in result.stdout


@pytest.mark.comfyui("0.3.64")  # (0.38's one line: test_sim_038_fidelity.py)
def test_a_real_port_conflict_fails_like_comfyui(
    sim: SimInstance, sim_factory: Callable[..., SimInstance]
) -> None:
    second = sim_factory("second", port=sim.port, wait=False)
    assert second.process.wait(30) == 1
    assert "address already in use" in second.log_path.read_text()


def test_crash_after_n_jobs(sim_factory: Callable[..., SimInstance]) -> None:
    crashing = sim_factory("crash", env={"COMFYFLEET_SIM_FAULTS": "crash-after=2"})
    for seed in (1, 2):
        graph = workflow("workflow_nomodel")
        graph["2"]["inputs"]["seed"] = seed
        try:
            http_json(f"{crashing.url}/prompt", {"prompt": graph})
        except OSError:
            break  # it may already be gone
    assert crashing.process.wait(30) == 1
    assert "illegal memory access" in crashing.log_path.read_text()


def test_hang_accepts_connections_but_never_answers(
    sim_factory: Callable[..., SimInstance],
) -> None:
    hung = sim_factory("hang", env={"COMFYFLEET_SIM_FAULTS": "hang"}, wait=False)
    hung.wait_listening()
    with pytest.raises(httpx.ReadTimeout):  # a connect timeout would mean nobody listens
        httpx.get(f"{hung.url}/system_stats", timeout=httpx.Timeout(0.5, connect=5))


def test_slow_answers(sim_factory: Callable[..., SimInstance]) -> None:
    slow = sim_factory("slow", env={"COMFYFLEET_SIM_FAULTS": "slow=0.8"}, wait=False)
    slow.wait_listening()
    started = time.monotonic()
    assert httpx.get(f"{slow.url}/prompt", timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.8  # a lower bound the fault guarantees


def test_http500_on_every_route(sim_factory: Callable[..., SimInstance]) -> None:
    broken = sim_factory("500", args=["--sim-faults", "http500"], wait=False)
    broken.wait_listening()
    for path in ("/system_stats", "/prompt", "/queue"):
        response = httpx.get(f"{broken.url}{path}", timeout=5)
        assert response.status_code == 500 and "Server got itself in trouble" in response.text


@pytest.mark.asyncio
async def test_no_callback_worker_looks_green_but_never_delivers(
    sim: SimInstance, sim_factory: Callable[..., SimInstance]
) -> None:
    silent = sim_factory(
        "silent", args=["--sim-name", "silent"], env={"COMFYFLEET_SIM_FAULTS": "no-callback"}
    )
    register(sim, "1", "silent", silent.port)
    http_json(
        f"{sim.url}/distributed/config/update_setting",
        {"key": "worker_timeout_seconds", "value": 1},
    )
    assert http_json(f"{silent.url}/prompt") == {"exec_info": {"queue_remaining": 0}}
    body, _, result = await run_distributed(sim, ["1"])
    assert body["worker_count"] == 1  # the master counted it in...
    assert [i.maker for i in result["images"]] == ["master"]  # ...but nothing arrived
    worker_run = next(iter(http_json(f"{silent.url}/history").values()))
    assert worker_run["status"]["status_str"] == "success"
    assert (
        "Timed out waiting for workers ['1']"
        in http_json(f"{sim.url}/distributed/local_log?lines=20")["content"]
    )


@pytest.mark.asyncio
async def test_vram_full(sim_factory: Callable[..., SimInstance]) -> None:
    full = sim_factory("full", env={"COMFYFLEET_SIM_FAULTS": "vram-full"})
    async with aiohttp.ClientSession() as session, listen(session, full.url, "oom") as ws:
        stats = await get_json(session, f"{full.url}/system_stats")
        assert stats["devices"][0]["vram_free"] == 0
        _, body = await post_json(
            session,
            f"{full.url}/prompt",
            {"prompt": workflow("workflow_nomodel"), "client_id": "oom"},
        )
        error = await ws.until("execution_error", body["prompt_id"])
    assert error["data"]["exception_type"] == "torch.OutOfMemoryError"
    assert "CUDA out of memory" in error["data"]["exception_message"]


def test_simulated_install_runs_with_comfyuis_command_line(tmp_path: Path) -> None:
    install = create_sim_install(tmp_path / "ComfyUI", device="NVIDIA H100 80GB HBM3", vram_gb=80)
    port = free_port()
    (tmp_path / "user").mkdir()  # real ComfyUI refuses a --user-directory that does not exist
    argv = [
        "main.py",
        "--port",
        str(port),
        "--enable-cors-header",
        "--disable-auto-launch",
        "--listen",
        "127.0.0.1",
        "--output-directory",
        str(tmp_path / "out"),
        "--temp-directory",
        str(tmp_path / "tmp"),
        "--input-directory",
        str(tmp_path / "in"),
        "--user-directory",
        str(tmp_path / "user"),
        "--database-url",
        f"sqlite:///{tmp_path / 'user' / 'comfyui.db'}",
    ]
    process = subprocess.Popen(
        [sys.executable, *argv],
        cwd=install,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"CUDA_VISIBLE_DEVICES": "GPU-aa", "PATH": "/usr/bin:/bin"},
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "To see the GUI go to" in line:
                break
        stats = http_json(f"http://127.0.0.1:{port}/system_stats")
        assert stats["system"]["argv"] == argv
        assert stats["devices"][0]["name"] == "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync"
        assert stats["devices"][0]["vram_total"] == 80 * 1024**3
        assert (tmp_path / "tmp" / "temp").is_dir() and (tmp_path / "out").is_dir()
    finally:
        process.terminate()
        process.wait(10)


def test_die_after_is_a_kill_9_after_that_long(sim_factory: Callable[..., SimInstance]) -> None:
    sim = sim_factory("dying", env={"COMFYFLEET_SIM_FAULTS": "die-after=0.5"})
    assert sim.process.wait(30) == -signal.SIGKILL
