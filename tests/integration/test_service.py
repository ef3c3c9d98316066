"""`comfy-fleet service`: the unit it installs, and `service run` as systemd runs it — ready
and watchdog notifications on a real notify socket, the queue dispatched to a rented pod and
the idle guard stopping that pod with no window open, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from app.core.cloud import CloudSettings, PodRecipe
from app.core.config import FleetConfig, MasterConfig
from app.core.queue import JobSpec
from app.core.workflow import load_workflow
from app.services.paths import resolve_paths
from app.services.queue_service import FleetQueue, QueuePaths
from app.services.storage import ConfigStore
from app.sim.fleet import REPO_ROOT, free_port
from tests.conftest import RECORDINGS
from tests.integration.cli_helpers import comfy_fleet
from tests.integration.runpod_helpers import KEY, simulated_runpod
from tests.waiting import wait_until


def test_install_writes_a_user_unit_with_credentials_never_secrets(
    tmp_path: Path, isolated_dirs: Path
) -> None:
    config = tmp_path / "my fleet.json"
    ConfigStore(config).save(FleetConfig())
    result = comfy_fleet(
        "service", "install", "--platform", "linux", "--credential",
        "RUNPOD_API_KEY=/etc/comfy-fleet/runpod.key", config=config,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    unit = isolated_dirs / "xdg_config_home" / "systemd" / "user" / "comfy-fleet.service"
    text = unit.read_text()
    assert f"wrote {unit}" in result.stdout and "systemctl --user enable --now" in result.stdout
    assert "Type=notify" in text and "WatchdogSec=60" in text
    assert "LoadCredential=RUNPOD_API_KEY:/etc/comfy-fleet/runpod.key" in text
    assert f'--config "{config}" service run' in text  # its own config, quoted (a space)
    bad = comfy_fleet("service", "install", "--credential", "RUNPOD API=x", config=config)
    assert bad.returncode == 2 and "a credential name is letters" in bad.stderr


@pytest.mark.parametrize("kept", ["file", "server"])
def test_service_run_dispatches_and_guards_the_pods_headless(
    kept: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The same on the local file and on a team's PostgreSQL server (`--queue-url`)."""
    url = request.getfixturevalue("pg_url") if kept == "server" else None
    backed = simulated_runpod(tmp_path / "pods")
    runpod = next(backed)
    notify_path = tmp_path / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.2)
    said: list[str] = []
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            try:
                said.append(notify.recv(4096).decode())
            except TimeoutError:
                continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    paths = resolve_paths(tmp_path / "fleet.json")
    cloud = CloudSettings(
        runpod_api_url=runpod.url,
        runpod_proxy="http://127.0.0.1:{pod}",
        poll_s=0.3,
        idle_stop_min=0.05,  # 3 s without work
        recipe=PodRecipe(gpu_type="NVIDIA GeForce RTX 4090"),
    )
    ConfigStore(paths.config_file).save(
        FleetConfig(master=MasterConfig(port=free_port()), cloud=cloud)
    )
    create = urllib.request.Request(
        f"{runpod.url}/v2/pods",
        data=json.dumps(cloud.recipe.body("worker-pod")).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(create, timeout=10).read()
    workflow = load_workflow((RECORDINGS / "workflows" / "workflow_nomodel.json").read_text())
    queue = FleetQueue(QueuePaths.under(paths.data_dir), url=url)
    queue.add(JobSpec("on the pod", workflow, 2, seed=1, workers=("worker-pod",)))
    assert queue.lock.acquire("a window on ana's desk")  # the service waits for it, saying so
    environment = {
        **os.environ,
        "NOTIFY_SOCKET": str(notify_path),
        "WATCHDOG_USEC": "400000",
        "RUNPOD_API_KEY": KEY,  # no keyring: the service manager's way
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "PYTHONPATH": str(REPO_ROOT),
    }
    service = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(paths.config_file),
         *(["--queue-url", url] if url else []), "service", "run"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert service.stdout is not None
        for line in service.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: "READY=1" in "\n".join(said))
        waiting = "waiting: the queue is dispatched by a window on ana's desk"
        wait_until(lambda: any(line.startswith(waiting) for line in lines))
        assert queue.store.job_brief(1).ended is None  # nothing dispatched meanwhile
        queue.lock.release()
        wait_until(lambda: queue.store.job_brief(1).ended is not None, timeout=60)
        assert {i.participant for i in queue.store.items(1)} == {"worker-pod"}
        assert [i.state.value for i in queue.store.items(1)] == ["done", "done"]
        wait_until(lambda: ConfigStore(paths.config_file).load().config.workers == (), timeout=30)
        pods = json.loads(
            urllib.request.urlopen(
                urllib.request.Request(
                    f"{runpod.url}/v2/pods", headers={"Authorization": f"Bearer {KEY}"}
                ),
                timeout=10,
            ).read()
        )["pods"]
        assert [p["status"] for p in pods] == ["EXITED"]  # stopped by the idle guard
        assert any(m.startswith("WATCHDOG=1") for m in said)
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0
    finally:
        if service.poll() is None:
            service.kill()
        reader.join(10)
        output = "".join(lines)
        listening.clear()
        listener.join(5)
        notify.close()
        queue.close()
        backed.close()
    assert "cloud: stopped worker-pod: no work for it" in output, output
    assert any(m.startswith("STOPPING=1") for m in said)
    assert KEY not in output and "Traceback" not in output
