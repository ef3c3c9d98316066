"""/system_stats as each ComfyUI version answers it (the recordings): one device or several,
`posix`/`nt` or `linux`/`win32`/`darwin`; and which versions have the jobs API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.core.health import has_jobs_api, parse_system_stats, version_tuple
from tests.conftest import RECORDINGS


def _recorded(path: str) -> Any:
    return json.loads((RECORDINGS / path).read_text(encoding="utf-8"))


def test_0364s_one_device_and_038s_every_visible_gpu_read_alike() -> None:
    old = _recorded("gpu-h200/comfy_http.json")
    old_stats = next(v["body"] for k, v in old.items() if k.endswith("GET /system_stats"))
    new = _recorded("comfyui-0.38/system_stats.json")["example_two_gpus"]
    assert old_stats["system"]["os"] == "posix" and new["system"]["os"] == "linux"
    first, second = parse_system_stats(old_stats), parse_system_stats(new)
    assert (first.comfyui_version, first.other_devices) == ("0.3.64", 0)
    assert (second.comfyui_version, second.other_devices) == ("0.38.1", 1)
    assert first.device == second.device == "cuda:0 NVIDIA H200 : cudaMallocAsync"
    assert second.vram_free == new["devices"][0]["vram_free"]  # the primary's, not a sum
    windows = {**new, "system": {**new["system"], "os": "win32"}}
    assert parse_system_stats(windows) == second


@pytest.mark.parametrize(
    ("version", "parsed", "jobs_api"),
    [
        ("0.3.64", (0, 3, 64), False),
        ("0.38.1", (0, 38, 1), True),
        ("v0.39.0", (0, 39, 0), True),
        ("1.0.0rc1", (1, 0, 0), True),
        ("?", (), False),
        (None, (), False),
    ],
)
def test_the_jobs_api_is_used_from_038_on(
    version: str | None, parsed: tuple[int, ...], jobs_api: bool
) -> None:
    assert version_tuple(version) == parsed and has_jobs_api(version) is jobs_api
