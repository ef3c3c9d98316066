"""`comfy-fleet cloud …` on the simulated Runpod API: login, create, pods, stop, terminate (asks),
cost, logs, gpus, guard; `status` with the pods' cost; the planted API key appears nowhere but
in the keyring."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from app.cli.cloud import cloud_command
from app.cli.fleet import status_command
from app.cli.main import parse_command_line
from app.core.cloud import CloudSettings
from app.core.config import FleetConfig, MasterConfig
from app.services.runpod import API_KEY
from app.services.secrets import SecretStore
from app.services.storage import ConfigStore
from app.sim.fleet import SimInstance, free_port
from tests.fakes.memory_keyring import MemoryKeyring
from tests.integration.cli_helpers import comfy_fleet
from tests.integration.runpod_helpers import KEY, SimRunpod


def run(
    config_file: Path, config: FleetConfig, store: SecretStore, *words: str, stdin: str = ""
) -> int:
    import sys

    args = parse_command_line(["cloud", *words])
    sys.stdin = io.StringIO(stdin)
    try:
        return cloud_command(args, ConfigStore(config_file), config, store)
    finally:
        sys.stdin = sys.__stdin__


def test_the_cloud_commands_on_a_simulated_runpod(
    runpod: SimRunpod,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = FleetConfig(cloud=CloudSettings(runpod_api_url=runpod.url))
    config_file = tmp_path / "fleet.json"
    ConfigStore(config_file).save(config)
    store = SecretStore(backend=MemoryKeyring())

    assert run(config_file, config, store, "login", "runpod", stdin="rp_wrong\n") == 1
    assert "refused the API key" in capsys.readouterr().err and store.get(API_KEY) is None
    assert run(config_file, config, store, "login", "runpod", stdin=f"{KEY}\n") == 0
    assert "Stored the Runpod API key in the system keyring (0 pod(s)" in capsys.readouterr().out
    assert store.get(API_KEY) == KEY

    assert run(config_file, config, store, "create", "--name", "gpu-a", "--json") == 0
    made = json.loads(capsys.readouterr().out)
    assert made["name"] == "gpu-a" and made["status"] == "PROVISIONING"
    assert run(config_file, config, store, "pods", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed["pods"]] == ["gpu-a"] and listed["cost_per_h"] > 0
    status_command(parse_command_line(["status"]), config, tmp_path / "state.json", store)
    assert "cloud: 1 of 1 pod(s) billing, $0.44/h" in capsys.readouterr().out
    assert run(config_file, config, store, "stop", "gpu-a") == 0
    assert "stop: gpu-a" in capsys.readouterr().out
    assert run(config_file, config, store, "logs", "gpu-a") == 0
    assert "stop requested" in capsys.readouterr().out
    assert run(config_file, config, store, "cost", "--json") == 0
    cost = json.loads(capsys.readouterr().out)
    assert cost["cost_per_h"] == 0.0 and cost["running"] == 0 and cost["today"] >= 0
    assert (
        run(config_file, config, store, "terminate", "gpu-a") == 1
    )  # no terminal to ask: not done
    assert "Not terminated gpu-a: answer y, or pass --yes" in capsys.readouterr().err
    assert run(config_file, config, store, "terminate", "gpu-a", "--yes") == 0
    assert "terminated" in capsys.readouterr().out
    assert run(config_file, config, store, "pods") == 0
    assert "no pods" in capsys.readouterr().out
    assert run(config_file, config, store, "gpus") == 0
    assert "NVIDIA GeForce RTX 4090\t24 GB" in capsys.readouterr().out

    assert run(config_file, config, store, "guard", "--idle-minutes", "30", "--elastic", "on") == 0
    assert capsys.readouterr().out == (
        "idle pods stopped: after 30 min; daily budget: none; "
        "elastic: on: past 10 min of queue, up to 2 pod(s)\n"
    )
    saved = ConfigStore(config_file).load().config.cloud
    assert (saved.idle_stop_min, saved.elastic, saved.runpod_api_url) == (30, True, runpod.url)

    # the key: in the keyring, nowhere else
    assert KEY not in config_file.read_text()
    assert all(KEY not in record.getMessage() for record in caplog.records)
    assert all(KEY not in p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    for process in psutil.process_iter(["cmdline"]):
        assert KEY not in " ".join(process.info["cmdline"] or [])


def test_status_shows_the_fleet_when_runpod_answers_html(
    sim_factory: Callable[..., SimInstance], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proxy's HTML page where Runpod's JSON belongs: the cloud line says so in words, the
    master's line is there as always (never an AttributeError)."""
    import http.server
    import threading

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>502 Bad Gateway</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    master = sim_factory("master")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        config = FleetConfig(
            master=MasterConfig(port=master.port), cloud=CloudSettings(runpod_api_url=url)
        )
        store = SecretStore(backend=MemoryKeyring())
        store.set(API_KEY, KEY)
        code = status_command(parse_command_line(["status"]), config, tmp_path / "s.json", store)
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert code == 0
    assert "cloud: Runpod answered something unexpected" in out and "not JSON" in out
    assert "master" in out and "online" in out


def test_a_headless_status_takes_the_key_from_the_environment_or_a_credential(
    runpod: SimRunpod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No desktop keyring (a service, a container): the real `comfy-fleet status` reaches the
    simulated Runpod with RUNPOD_API_KEY, then with systemd's credential file; it says where
    the key came from and never prints it."""
    config_file = tmp_path / "fleet.json"
    config = FleetConfig(
        master=MasterConfig(port=free_port()), cloud=CloudSettings(runpod_api_url=runpod.url)
    )
    ConfigStore(config_file).save(config)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("RUNPOD_API_KEY", KEY)
    by_environment = comfy_fleet("status", "--json", config=config_file)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "RUNPOD_API_KEY").write_text(f"{KEY}\n")
    monkeypatch.delenv("RUNPOD_API_KEY")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    by_credential = comfy_fleet("status", "--json", config=config_file)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    without = comfy_fleet("status", config=config_file)
    for result, source in (
        (by_environment, "environment variable RUNPOD_API_KEY"),
        (by_credential, "service credential RUNPOD_API_KEY"),
    ):
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["cloud"]["pods"] == 0 and "error" not in answer["cloud"]
        assert answer["secrets"]["cloud/runpod"] == source
        assert KEY not in result.stdout + result.stderr
    assert "secret cloud/runpod: not set (the keyring cannot be read here)" in without.stdout
    assert "cloud:" not in without.stdout  # no key: no cloud line
