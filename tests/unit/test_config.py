from __future__ import annotations

import dataclasses

import pytest

from app.core.codec import from_data, to_data
from app.core.config import (
    AppSettings,
    FleetConfig,
    MasterConfig,
    NamedTunnel,
    TunnelSettings,
    WorkerConfig,
    WorkerKind,
    validate_config,
)
from app.core.errors import ConfigError
from app.core.net import base_url, parse_cloud_address, split_args

FULL = FleetConfig(
    master=MasterConfig(
        comfyui_dir="/opt/ComfyUI",
        python="/usr/bin/python3",
        gpu="0",
        extra_args=("--lowvram",),
        listen="0.0.0.0",
    ),
    workers=(
        WorkerConfig(
            "gpu1",
            WorkerKind.LOCAL,
            port=8189,
            gpu="GPU-9664e333-53f7-c99e-3697",
            extra_args=("--preview-method", "auto"),
        ),
        WorkerConfig("lan", WorkerKind.REMOTE, host="comfy-box.lan", port=8188, enabled=False),
        WorkerConfig(
            "pod",
            WorkerKind.CLOUD,
            host="abc123-8188.proxy.runpod.net",
            port=443,
            distributed_id="3",
        ),
    ),
    tunnel=TunnelSettings(use_http2=True, named=(NamedTunnel("studio", "comfy.example.com"),)),
    app=AppSettings(poll_interval_s=1.5, crash_loop_exits=3),
)


def test_round_trip_keeps_every_field() -> None:
    data = to_data(FULL)
    assert data["workers"][2]["kind"] == "cloud"
    assert from_data(FleetConfig, data) == FULL


def test_missing_keys_take_defaults() -> None:
    config = from_data(FleetConfig, {"workers": [{"name": "w", "kind": "local"}]})
    assert config.master == MasterConfig()
    assert config.workers[0].port == 8189
    assert config.app == AppSettings()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"master": {"port": "8188"}}, "master.port"),
        ({"workers": [{"name": "w", "kind": "gpu"}]}, "workers[0].kind"),
        ({"workers": {"name": "w"}}, "workers"),
        ({"app": {"notify_crash": "yes"}}, "app.notify_crash"),
        ({"master": {"port": True}}, "master.port"),
    ],
)
def test_wrong_types_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as error:
        from_data(FleetConfig, data)
    assert error.value.field == field


def _with_workers(*workers: WorkerConfig, master: MasterConfig | None = None) -> FleetConfig:
    return FleetConfig(master=master or MasterConfig(), workers=workers)


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        (_with_workers(WorkerConfig("a", WorkerKind.LOCAL, port=0)), "worker 'a' port", "port"),
        (
            _with_workers(WorkerConfig("a", WorkerKind.REMOTE, host="h", port=65536)),
            "worker 'a' port",
            "1-65535",
        ),
        (_with_workers(master=MasterConfig(port=99999)), "master.port", "port"),
        (
            _with_workers(
                WorkerConfig("a", WorkerKind.LOCAL, port=8189),
                WorkerConfig("A", WorkerKind.LOCAL, port=8190),
            ),
            "name",
            "two workers",
        ),
        (
            _with_workers(
                WorkerConfig("a", WorkerKind.LOCAL, port=8189),
                WorkerConfig("b", WorkerKind.LOCAL, port=8189),
            ),
            "worker 'b' port",
            "already worker 'a'",
        ),
        (
            _with_workers(WorkerConfig("a", WorkerKind.LOCAL, port=8188)),
            "worker 'a' port",
            "master",
        ),
        (
            _with_workers(WorkerConfig("a", WorkerKind.REMOTE, host="http://box:8188")),
            "worker 'a' host",
            "scheme",
        ),
        (
            _with_workers(WorkerConfig("a", WorkerKind.REMOTE, host="bad_host!")),
            "worker 'a' host",
            "not a valid host",
        ),
        (
            _with_workers(WorkerConfig("a", WorkerKind.LOCAL, gpu="first")),
            "worker 'a' gpu",
            "not a GPU",
        ),
        (_with_workers(WorkerConfig("", WorkerKind.LOCAL)), "name", "needs a name"),
        (_with_workers(WorkerConfig("master", WorkerKind.LOCAL)), "name", "reserved"),
        (
            _with_workers(WorkerConfig("a", WorkerKind.LOCAL, host="192.0.2.5")),
            "worker 'a' host",
            "this machine",
        ),
        (
            _with_workers(WorkerConfig("a", WorkerKind.CLOUD, host="x.example.com", gpu="0")),
            "worker 'a' gpu",
            "machine that runs",
        ),
        (_with_workers(master=MasterConfig(listen="not an address")), "master.listen", "host name"),
    ],
)
def test_each_validation_error(config: FleetConfig, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert error.value.field == field
    assert words in error.value.reason


def test_remote_ports_may_repeat_and_remote_master_frees_its_port() -> None:
    validate_config(
        _with_workers(
            WorkerConfig("a", WorkerKind.REMOTE, host="box1", port=8188),
            WorkerConfig("b", WorkerKind.REMOTE, host="box2", port=8188),
        )
    )
    validate_config(
        _with_workers(
            WorkerConfig("a", WorkerKind.LOCAL, port=8188),
            master=MasterConfig(host="master.lan"),
        )
    )


def test_valid_full_config() -> None:
    validate_config(FULL)


def test_next_free_local_port_skips_master_and_taken_ports() -> None:
    config = _with_workers(WorkerConfig("a", WorkerKind.LOCAL, port=8189))
    assert config.next_free_local_port() == 8190
    config = dataclasses.replace(config, master=MasterConfig(port=8190))
    assert config.next_free_local_port() == 8191


def test_extra_args_follow_shell_quoting_without_a_shell() -> None:
    assert split_args('--preview-method auto --output-directory "/data/my out"') == (
        "--preview-method",
        "auto",
        "--output-directory",
        "/data/my out",
    )
    assert split_args("--x; rm -rf /") == ("--x;", "rm", "-rf", "/")
    with pytest.raises(ConfigError) as error:
        split_args('--title "unclosed')
    assert error.value.field == "extra_args"


@pytest.mark.parametrize(
    ("host", "port", "cloud", "url"),
    [
        ("127.0.0.1", 8189, False, "http://127.0.0.1:8189"),
        ("abc-8188.proxy.runpod.net", 443, True, "https://abc-8188.proxy.runpod.net"),
        ("abc-8188.proxy.runpod.net", 8188, False, "https://abc-8188.proxy.runpod.net"),
        ("box.example.com", 443, False, "https://box.example.com"),
        ("x.trycloudflare.com", 80, False, "https://x.trycloudflare.com"),
        ("::1", 8188, False, "http://[::1]:8188"),
    ],
)
def test_worker_urls_follow_distributed_rules(host: str, port: int, cloud: bool, url: str) -> None:
    assert base_url(host, port, cloud) == url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abcd1234efgh", ("abcd1234efgh-8188.proxy.runpod.net", 443)),
        ("abcd1234efgh-8189", ("abcd1234efgh-8189.proxy.runpod.net", 443)),
        (
            "https://abcd1234efgh-8188.proxy.runpod.net/",
            ("abcd1234efgh-8188.proxy.runpod.net", 443),
        ),
        ("comfy.example.com", ("comfy.example.com", 443)),
    ],
)
def test_cloud_address_accepts_pod_ids_and_urls(text: str, expected: tuple[str, int]) -> None:
    assert parse_cloud_address(text) == expected
