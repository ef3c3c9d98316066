from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.distributed import merge_distributed_config
from app.core.errors import ConfigError


def recorded_gpu_config(recordings: Path) -> dict[str, object]:
    exchanges = json.loads((recordings / "gpu-h200" / "comfy_http.json").read_text())
    body = exchanges["register:master:GET /distributed/config"]["body"]
    assert isinstance(body, dict)
    return body


def test_import_the_recorded_config(recordings: Path) -> None:
    result = merge_distributed_config(FleetConfig(), recorded_gpu_config(recordings))
    assert result.added == ("worker-8189",)
    worker = result.config.workers[0]
    assert worker == WorkerConfig(
        "worker-8189", WorkerKind.LOCAL, port=8189, gpu="0", distributed_id="1"
    )
    assert result.config.master.port == 8188


def test_import_every_worker_type_and_field() -> None:
    data = {
        "master": {
            "host": "master.example.com",
            "port": 8288,
            "cuda_device": 0,
            "extra_args": "--highvram",
        },
        "workers": [
            {
                "id": "1",
                "name": "gpu1",
                "host": "localhost",
                "port": 8189,
                "cuda_device": 1,
                "enabled": True,
                "extra_args": "--preview-method auto",
                "type": "local",
            },
            {
                "id": "2",
                "name": "lan",
                "host": "192.0.2.20",
                "port": 8188,
                "cuda_device": None,
                "enabled": False,
                "type": "remote",
            },
            {
                "id": "3",
                "name": "pod",
                "host": "abc-8188.proxy.runpod.net",
                "port": 443,
                "enabled": True,
                "type": "cloud",
            },
            {"id": "4", "name": "legacy", "host": "10.1.1.1", "port": 8188},
        ],
    }
    result = merge_distributed_config(FleetConfig(), data, comfyui_dir="/opt/ComfyUI")
    master = result.config.master
    assert (master.port, master.gpu, master.extra_args) == (8288, "0", ("--highvram",))
    assert master.comfyui_dir == "/opt/ComfyUI"
    gpu1, lan, pod, legacy = result.config.workers
    assert (gpu1.host, gpu1.gpu, gpu1.extra_args) == (
        "127.0.0.1",
        "1",
        ("--preview-method", "auto"),
    )
    assert (lan.kind, lan.enabled, lan.gpu) == (WorkerKind.REMOTE, False, None)
    assert (pod.kind, pod.port) == (WorkerKind.CLOUD, 443)
    assert legacy.kind is WorkerKind.REMOTE


def test_import_merges_by_name_and_keeps_others() -> None:
    current = FleetConfig(
        master=MasterConfig(comfyui_dir="/keep"),
        workers=(
            WorkerConfig("mine", WorkerKind.REMOTE, host="box"),
            WorkerConfig("gpu1", WorkerKind.LOCAL, port=8195),
        ),
    )
    data = {
        "master": {"host": ""},
        "workers": [{"id": "1", "name": "gpu1", "port": 8189, "cuda_device": 1, "type": "local"}],
    }
    result = merge_distributed_config(current, data)
    assert result.updated == ("gpu1",) and result.added == ()
    assert [w.name for w in result.config.workers] == ["mine", "gpu1"]
    assert result.config.workers[1].port == 8189
    assert result.config.master.comfyui_dir == "/keep"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "gpu_config.json"),
        ({"workers": {"a": 1}}, "workers"),
        ({"workers": [{"name": "a", "port": "x"}]}, "workers[0].port"),
        ({"workers": [{"name": "a", "port": 8189, "type": "gpu"}]}, "workers[0].type"),
        ({"workers": [{"name": "a", "port": 8188, "type": "local"}]}, "worker 'a' port"),
    ],
)
def test_bad_documents_name_the_field(data: object, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        merge_distributed_config(FleetConfig(), data)
    assert error.value.field == field
