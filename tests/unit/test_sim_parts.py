from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import FleetConfig, WorkerConfig, WorkerKind, validate_config
from app.demo import DEMO_WORKERS, demo_workers
from app.sim.images import add_noise, decode_png, encode_png, png_text, solid, upscale2x
from app.sim.settings import Faults, load_settings, parse_faults


def test_png_round_trip_and_text() -> None:
    image = add_noise(solid(5, 3, 0x102030), seed=7, strength=0.5, maker="w1")
    data = encode_png(image, {"prompt": "{}"})
    assert png_text(data)["prompt"] == "{}"
    decoded = decode_png(data)
    assert (decoded.width, decoded.height, decoded.pixels) == (5, 3, image.pixels)
    assert (decoded.maker, decoded.seed) == ("w1", 7)


def test_upscale_doubles_each_pixel() -> None:
    image = solid(2, 1, 0xFF0000)
    big = upscale2x(image)
    assert (big.width, big.height) == (4, 2)
    assert big.pixels == bytes((255, 0, 0)) * 8


def test_fault_list_parses_every_mode() -> None:
    faults = parse_faults(
        "start-fail=cuda-oom,crash-after=3,die-after=9,hang,slow=2.0,http500,no-callback,vram-full"
    )
    assert faults == Faults(
        start_fail="cuda-oom",
        crash_after=3,
        die_after_s=9.0,
        hang=True,
        slow_s=2.0,
        http500=True,
        no_callback=True,
        vram_full=True,
    )
    assert parse_faults("") == Faults()
    with pytest.raises(ValueError, match="unknown fault"):
        parse_faults("explode")
    with pytest.raises(ValueError, match="start-fail"):
        parse_faults("start-fail=bored")


def test_settings_take_comfyui_flags_and_the_sims_knobs(tmp_path: Path) -> None:
    argv = [
        "--port",
        "8190",
        "--listen",
        "0.0.0.0",
        "--cpu",
        "--output-directory",
        "/o",
        "--temp-directory",
        "/t",
        "--sim-name",
        "w1",
        "--database-url",
        "sqlite:///db",
    ]
    settings = load_settings(argv, tmp_path)
    assert (settings.port, settings.listen, settings.cpu) == (8190, "0.0.0.0", True)
    assert settings.output == Path("/o") and settings.temp == Path("/t/temp")
    assert settings.argv == ("main.py", *argv)
    assert settings.database_url == "sqlite:///db"
    assert settings.name == "w1"


def test_unknown_flags_are_refused_as_comfyui_refuses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        load_settings(["--port", "8190", "--future-flag", "x"], tmp_path)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: main.py [-h]")
    assert err.splitlines()[-1] == "main.py: error: unrecognized arguments: --future-flag x"


def test_base_directory_moves_the_data_and_the_extensions_config(tmp_path: Path) -> None:
    install, base = tmp_path / "install", tmp_path / "base"
    settings = load_settings(["--base-directory", str(base)], install)
    assert settings.output == base / "output" and settings.user == base / "user"
    assert settings.distributed_config == (
        base / "custom_nodes" / "ComfyUI-Distributed" / "gpu_config.json"
    )
    plain = load_settings([], install)
    assert plain.distributed_config.parent == install / "custom_nodes" / "ComfyUI-Distributed"


def test_sim_json_is_overridden_by_env_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sim.json").write_text('{"time_scale": 3.0, "device": "A", "vram_gb": 8}')
    assert load_settings([], tmp_path).time_scale == 3.0
    monkeypatch.setenv("COMFYFLEET_SIM_TIME_SCALE", "2.0")
    settings = load_settings(["--sim-device", "B"], tmp_path)
    assert (settings.time_scale, settings.device_name, settings.vram_total) == (2.0, "B", 8 * 2**30)


def test_demo_workers_beyond_the_mixed_set_get_unique_names() -> None:
    names = [w.name for w in demo_workers(9)]
    assert names[:4] == [w.name for w in DEMO_WORKERS]
    assert names[4] == "gpu1-4090 #2" and names[8] == "gpu1-4090 #3"
    workers = tuple(WorkerConfig(n, WorkerKind.REMOTE, port=9000 + i) for i, n in enumerate(names))
    validate_config(FleetConfig(workers=workers))  # `comfy-fleet demo --workers 9` failed here


def test_an_install_sets_each_instance_by_its_port(tmp_path: Path) -> None:
    (tmp_path / "sim.json").write_text(
        '{"device": "A", "by_port": {"8191": {"device": "B", "faults": "die-after=5"}}}'
    )
    assert load_settings(["--port", "8190"], tmp_path).device_name == "A"
    own = load_settings(["--port", "8191"], tmp_path)
    assert own.device_name == "B" and own.faults.die_after_s == 5.0
