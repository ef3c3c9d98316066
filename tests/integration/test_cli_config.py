from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import __version__
from tests.integration.cli_helpers import comfy_fleet


def test_version() -> None:
    result = comfy_fleet("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"comfy-fleet {__version__}"


def test_config_path_follows_flag_env_and_platform(
    tmp_path: Path, isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = comfy_fleet("config", "path").stdout.strip()
    assert default == str(isolated_dirs / "xdg_config_home" / "comfy-fleet" / "fleet.json")
    monkeypatch.setenv("COMFY_FLEET_CONFIG", str(tmp_path / "env.json"))
    assert comfy_fleet("config", "path").stdout.strip() == str(tmp_path / "env.json")
    flagged = comfy_fleet("config", "path", config=tmp_path / "flag.json").stdout.strip()
    assert flagged == str(tmp_path / "flag.json")


def test_workers_add_edit_list_remove(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.json"
    assert (
        comfy_fleet(
            "worker",
            "add",
            "local",
            "--name",
            "gpu1",
            "--gpu",
            "1",
            "--extra-args",
            "--preview-method auto",
            config=cfg,
        ).returncode
        == 0
    )
    assert (
        comfy_fleet(
            "worker", "add", "remote", "--name", "lan", "--host", "127.0.0.20", config=cfg
        ).returncode
        == 0
    )
    assert (
        comfy_fleet(
            "worker", "add", "cloud", "--name", "pod", "--host", "abcd1234efgh", config=cfg
        ).returncode
        == 0
    )
    edited = comfy_fleet("worker", "edit", "lan", "--port", "8288", "--disable", config=cfg)
    assert edited.returncode == 0, edited.stderr
    listed = json.loads(comfy_fleet("worker", "list", "--json", config=cfg).stdout)
    assert [(w["name"], w["kind"], w["url"], w["enabled"]) for w in listed] == [
        ("gpu1", "local", "http://127.0.0.1:8189", True),
        ("lan", "remote", "http://127.0.0.20:8288", False),
        ("pod", "cloud", "https://abcd1234efgh-8188.proxy.runpod.net", True),
    ]
    assert listed[0]["extra_args"] == ["--preview-method", "auto"]
    assert listed[0]["gpu"] == "1"
    assert comfy_fleet("worker", "remove", "lan", config=cfg).returncode == 0
    text = comfy_fleet("worker", "list", config=cfg).stdout
    assert "lan" not in text and "gpu1" in text and "pod" in text


def test_second_local_worker_takes_next_port(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.json"
    comfy_fleet("worker", "add", "local", "--name", "a", config=cfg)
    comfy_fleet("worker", "add", "local", "--name", "b", config=cfg)
    ports = [
        w["port"] for w in json.loads(comfy_fleet("worker", "list", "--json", config=cfg).stdout)
    ]
    assert ports == [8189, 8190]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["worker", "add", "local", "--name", "a", "--port", "70000"], "port"),
        (["worker", "add", "local", "--name", "a", "--port", "8188"], "port"),
        (["worker", "add", "remote", "--name", "a"], "host"),
        (["worker", "add", "remote", "--name", "a", "--host", "http://x:1/"], "host"),
        (["worker", "add", "local", "--name", "a", "--gpu", "fast"], "gpu"),
        (["worker", "add", "local", "--name", "a", "--extra-args", '"open'], "extra-args"),
        (["worker", "edit", "nobody", "--port", "1"], "name"),
        (["master", "set", "--port", "0"], "master.port"),
        (["master", "set", "--comfyui", "/nonexistent"], "comfyui"),
        (["worker", "add", "local"], "--name"),
    ],
)
def test_usage_errors_exit_2_naming_the_field(tmp_path: Path, args: list[str], field: str) -> None:
    result = comfy_fleet(*args, config=tmp_path / "fleet.json")
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert field in last_line
    assert not (tmp_path / "fleet.json").exists()  # nothing half-saved


def test_duplicate_name_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.json"
    comfy_fleet("worker", "add", "local", "--name", "a", config=cfg)
    result = comfy_fleet("worker", "add", "remote", "--name", "A", "--host", "box", config=cfg)
    assert result.returncode == 2 and "name" in result.stderr


def test_master_set_and_show(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.json"
    install = tmp_path / "ComfyUI"
    install.mkdir()
    (install / "main.py").write_text("")
    result = comfy_fleet(
        "master",
        "set",
        "--comfyui",
        str(install),
        "--port",
        "8288",
        "--listen",
        "0.0.0.0",
        "--gpu",
        "GPU-9664e333-53f7-c99e",
        "--extra-args",
        "--lowvram --preview-method auto",
        config=cfg,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(comfy_fleet("config", "show", "--json", config=cfg).stdout)
    assert shown["master"] == {
        "comfyui_dir": str(install),
        "python": None,
        "host": "127.0.0.1",
        "port": 8288,
        "listen": "0.0.0.0",
        "extra_args": ["--lowvram", "--preview-method", "auto"],
        "gpu": "GPU-9664e333-53f7-c99e",
    }
    comfy_fleet("master", "set", "--comfyui", "", config=cfg)
    text = comfy_fleet("config", "show", config=cfg).stdout
    assert "already running" in text


def test_import_distributed(tmp_path: Path, recordings: Path) -> None:
    exchanges = json.loads((recordings / "cpu" / "comfy_http.json").read_text())
    install = tmp_path / "ComfyUI"
    ext = install / "custom_nodes" / "ComfyUI-Distributed"
    ext.mkdir(parents=True)
    (install / "main.py").write_text("")
    gpu_config = ext / "gpu_config.json"
    gpu_config.write_text(json.dumps(exchanges["register:master:GET /distributed/config"]["body"]))
    cfg = tmp_path / "fleet.json"
    result = comfy_fleet("config", "import-distributed", str(gpu_config), config=cfg)
    assert result.returncode == 0, result.stderr
    assert "1 added" in result.stdout
    shown = json.loads(comfy_fleet("config", "show", "--json", config=cfg).stdout)
    assert shown["master"]["comfyui_dir"] == str(install)
    assert shown["workers"][0]["name"] == "worker-8189"
    bad = comfy_fleet("config", "import-distributed", str(tmp_path / "nope.json"), config=cfg)
    assert bad.returncode == 2 and "FILE" in bad.stderr


def test_corrupt_config_is_reported_and_kept(tmp_path: Path) -> None:
    cfg = tmp_path / "fleet.json"
    cfg.write_text('{"workers": [')
    result = comfy_fleet("worker", "list", config=cfg)
    assert result.returncode == 0
    assert "moved to" in result.stderr
    backups = list(tmp_path.glob("fleet.json.invalid-*"))
    assert len(backups) == 1 and backups[0].read_text() == '{"workers": ['
