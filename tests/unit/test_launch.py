from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

import pytest

from app.core.config import LOOPBACK, FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.launch import (
    DESKTOP_PORT,
    CrashCause,
    Found,
    GpuInfo,
    InstallChoice,
    RestartPolicy,
    build_launch,
    choose_python,
    classify_crash,
    desktop_base_path,
    desktop_config_files,
    find_comfyui,
    install_choices,
    launch_for,
    propose_fleet,
    propose_setup,
)
from tests.conftest import RECORDINGS

HOME = PurePath("/home/ada")


def test_find_comfyui_order() -> None:
    existing = {HOME / "ComfyUI/main.py", PurePath("/opt/env/main.py"), PurePath("/cfg/main.py")}
    exists = existing.__contains__
    assert find_comfyui("/cfg", "/opt/env", HOME, exists).reason == "the configured folder"
    assert find_comfyui(None, "/opt/env", HOME, exists).reason == "COMFYUI_PATH"
    assert find_comfyui(None, None, HOME, exists).path == HOME / "ComfyUI"
    assert find_comfyui("/nowhere", None, PurePath("/empty"), exists) is None
    portable = {HOME / "ComfyUI_windows_portable/ComfyUI/main.py"}
    assert (
        find_comfyui(None, None, HOME, portable.__contains__).reason == "the portable Windows build"
    )


def test_choose_python_prefers_the_install_env() -> None:
    install = PurePath("/c/ComfyUI")
    assert choose_python(install, "/usr/bin/python3.12", "/x", lambda p: True).path == PurePath(
        "/usr/bin/python3.12"
    )
    venv = {install / ".venv/bin/python"}
    assert choose_python(install, None, "/x", venv.__contains__).reason == "the install's .venv"
    embedded = {install / "../python_embeded/python.exe"}
    assert "embedded" in choose_python(install, None, "/x", embedded.__contains__).reason
    assert choose_python(install, None, "/me/python", lambda p: False).path == PurePath(
        "/me/python"
    )


def test_propose_fleet() -> None:
    gpus = [GpuInfo(0, "GPU-a", "H200"), GpuInfo(1, "GPU-b", "H200"), GpuInfo(2, "GPU-c", "L4")]
    proposal = propose_fleet(FleetConfig(), gpus)
    assert proposal.master.gpu == "GPU-a"
    assert [(w.name, w.port, w.gpu) for w in proposal.workers] == [
        ("gpu1", 8189, "GPU-b"),
        ("gpu2", 8190, "GPU-c"),
    ]
    assert propose_fleet(FleetConfig(), []).master.gpu == "cpu"


DESKTOP = HOME / "AppData/Local/Programs/@comfyorgcomfyui-electron/resources/ComfyUI"
GPUS = [GpuInfo(0, "GPU-a", "H200"), GpuInfo(1, "GPU-b", "L4")]


def test_install_choices_lists_every_install_with_its_python() -> None:
    existing = {
        HOME / "ComfyUI/main.py",
        HOME / "ComfyUI/.venv/bin/python",
        DESKTOP / "main.py",
        PurePath("/data/comfy/.venv/Scripts/python.exe"),
    }
    choices = install_choices(None, None, HOME, existing.__contains__, "/me/python", "/data/comfy")
    assert [(c.folder, c.desktop_port) for c in choices] == [
        (HOME / "ComfyUI", None),
        (DESKTOP, DESKTOP_PORT),
    ]
    git, desktop = choices
    assert git.python.path == HOME / "ComfyUI/.venv/bin/python"
    assert git.python_to_keep is None  # the launch finds the install's venv again
    assert desktop.python.path == PurePath("/data/comfy/.venv/Scripts/python.exe")
    assert desktop.python_to_keep == "/data/comfy/.venv/Scripts/python.exe"
    assert install_choices(None, None, HOME, lambda p: False, "/me/python") == []
    again = install_choices(str(HOME / "ComfyUI"), None, HOME, existing.__contains__, "/me/p")
    assert [c.reason for c in again] == ["the configured folder", "ComfyUI Desktop's install"]


def test_desktop_config_files_and_base_path() -> None:
    assert desktop_config_files(HOME, None, None) == (
        HOME / "Library/Application Support/ComfyUI/config.json",
        HOME / ".config/ComfyUI/config.json",
    )
    windows = desktop_config_files(HOME, "C:/Users/ada/AppData/Roaming", "/x")
    assert windows[0] == PurePath("C:/Users/ada/AppData/Roaming/ComfyUI/config.json")
    assert windows[2] == PurePath("/x/ComfyUI/config.json")
    assert desktop_base_path(json.dumps({"basePath": "/data/comfy", "x": 1})) == "/data/comfy"
    for bad in ("", "not json", "[]", '{"basePath": 3}', '{"basePath": ""}'):
        assert desktop_base_path(bad) is None


def test_propose_setup_launches_or_connects_to_comfyui_desktop() -> None:
    lan = WorkerConfig("lan", WorkerKind.REMOTE, host="127.0.0.9", port=8188)
    old = WorkerConfig("old", WorkerKind.LOCAL, port=8200)
    config = FleetConfig(workers=(old, lan))
    desktop = InstallChoice(DESKTOP, Found(PurePath("/d/.venv/bin/python"), "x"), "d", 8000)
    launched = propose_setup(config, desktop, GPUS, connect=False)
    assert launched.master.comfyui_dir == str(DESKTOP)
    assert launched.master.python == "/d/.venv/bin/python"
    assert launched.master.gpu == "GPU-a"
    assert launched.master.port == 8188  # not ComfyUI Desktop's own 8000
    assert [(w.name, w.gpu) for w in launched.workers] == [("gpu1", "GPU-b"), ("lan", None)]
    connected = propose_setup(config, desktop, GPUS, connect=True)
    assert connected.master.comfyui_dir is None
    assert (connected.master.host, connected.master.port) == (LOOPBACK, 8000)
    git = InstallChoice(HOME / "ComfyUI", Found(HOME / "ComfyUI/.venv/bin/python", "v"), "h")
    assert propose_setup(config, git, [], connect=False).master.python is None
    assert propose_setup(config, git, [], connect=False).workers == (lan,)
    assert propose_setup(config, None, GPUS, connect=False).master.comfyui_dir is None


def test_worker_command_line_and_environment() -> None:
    spec = build_launch(
        "gpu1",
        PurePath("/c"),
        PurePath("/c/venv/bin/python"),
        8189,
        "GPU-b",
        None,
        ["--cuda-device", "1", "--preview-method", "auto", "--cuda-device=2"],
        PurePath("/d/gpu1"),
    )
    assert spec.argv[:9] == (
        "/c/venv/bin/python",
        "main.py",
        "--port",
        "8189",
        "--enable-cors-header",
        "--disable-auto-launch",
        "--listen",
        "127.0.0.1",
        "--user-directory",
    )
    assert "--cuda-device" not in spec.argv and "1" not in spec.argv  # the flag and its value
    assert spec.argv[-2:] == ("--preview-method", "auto")
    assert (
        spec.note == "left out --cuda-device 1 --cuda-device=2: the GPU is chosen in the GPU field"
    )
    assert spec.folders == ("/d/gpu1/user", "/d/gpu1/tmp", "/d/gpu1/output")  # made first
    assert "sqlite:////d/gpu1/user/comfyui.db" in spec.argv
    # its own output (one folder shared with the master mixes up images); input stays shared
    assert spec.argv[spec.argv.index("--output-directory") + 1] == "/d/gpu1/output"
    assert "--input-directory" not in spec.argv
    assert spec.env == {
        "CUDA_VISIBLE_DEVICES": "GPU-b",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "COMFYUI_IS_WORKER": "1",
    }
    assert spec.cwd == "/c"


def test_master_on_cpu_and_listen_choice() -> None:
    config = FleetConfig(
        master=MasterConfig(comfyui_dir="/c", gpu="cpu", listen="0.0.0.0"),
        workers=(WorkerConfig("lan", WorkerKind.REMOTE, host="box"),),
    )
    spec = launch_for(config, "master", PurePath("/c"), PurePath("python"), PurePath("/d"))
    assert "--cpu" in spec.argv and "CUDA_VISIBLE_DEVICES" not in spec.env
    assert spec.argv[spec.argv.index("--listen") + 1] == "0.0.0.0"
    assert "COMFYUI_IS_WORKER" not in spec.env
    with pytest.raises(ValueError):
        launch_for(config, "lan", PurePath("/c"), PurePath("python"), PurePath("/d"))


@pytest.mark.parametrize(
    ("code", "lines", "cause"),
    [
        (
            1,
            ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB"],
            CrashCause.CUDA_OOM,
        ),
        (
            1,
            [
                "OSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8188):"
                " address already in use"
            ],
            CrashCause.PORT_IN_USE,
        ),
        (1, ["ModuleNotFoundError: No module named 'torchsde'"], CrashCause.MISSING_MODULE),
        (
            1,
            ["   0.0 seconds (IMPORT FAILED): /opt/ComfyUI/custom_nodes/Broken"],
            CrashCause.CUSTOM_NODE,
        ),
        (
            1,
            ["RuntimeError: CUDA error: an illegal memory access was encountered"],
            CrashCause.CUDA_DRIVER,
        ),
        (-9, ["Prompt executed in 0.1 seconds"], CrashCause.SIGNAL),
        (137, [], CrashCause.SIGNAL),
        (3, ["something odd"], CrashCause.UNKNOWN),
    ],
)
def test_crash_causes(code: int, lines: list[str], cause: CrashCause) -> None:
    crash = classify_crash(code, lines)
    assert crash.cause is cause
    assert f"exit code {code}" in crash.summary


def test_an_argparse_refusal_is_a_bad_argument_that_is_not_retried() -> None:
    usage = "usage: main.py [-h] [--listen [IP]] [--port PORT]"
    crash = classify_crash(2, [usage, "main.py: error: unrecognized arguments: 1"])
    assert crash.cause is CrashCause.BAD_ARGUMENT and not crash.retryable
    assert crash.summary == "bad launch argument: unrecognized arguments: 1"
    assert classify_crash(1, ["x"]).retryable
    assert classify_crash(2, ["no argparse line here"]).cause is CrashCause.UNKNOWN


def test_missing_module_names_it() -> None:
    crash = classify_crash(1, ["x", "ModuleNotFoundError: No module named 'torchsde'", "y"])
    assert crash.detail == "torchsde"


def test_backoff_and_crash_loop() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert not policy.is_crash_loop([0, 100, 200, 300], 300)
    assert policy.is_crash_loop([0, 100, 200, 300, 400], 400)
    assert not policy.is_crash_loop([0, 1, 2, 3, 700], 700)  # older exits fall out of the window


def _038_launches() -> dict[str, Any]:
    path = RECORDINGS / "comfyui-0.38" / "launch_errors.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def test_038s_port_in_use_line_is_a_port_in_use() -> None:
    line = _038_launches()["port_in_use"]["log_line"]
    crash = classify_crash(1, ["Starting server", f"ERROR {line}"])
    assert crash.cause is CrashCause.PORT_IN_USE and crash.retryable


@pytest.mark.parametrize("kind", ["in_use", "corrupt", "unsupported_url"])
def test_038s_asset_database_stop_says_what_it_said(kind: str) -> None:
    failures = _038_launches()["startup_failures"]
    said = failures["kinds"][kind].replace("<db path>", "/w/user/comfyui.db")
    lines = ["Starting...", failures["first_line_prefix"] + kind, *said.splitlines()]
    crash = classify_crash(failures["exit_code"], lines)
    assert crash.cause is CrashCause.DATABASE
    assert crash.detail == f"{kind}: {said.splitlines()[0]}"
    assert crash.retryable is (kind == "in_use")  # held by another one: it may let go
