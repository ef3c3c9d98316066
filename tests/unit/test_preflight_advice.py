"""The preflight's advice fits where the participant runs and how ComfyFleet's own process for
it is doing."""

from __future__ import annotations

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.core.preflight_advice import (
    LOCAL_UNREACHABLE,
    UNREACHABLE,
    Where,
    preflight_advice,
    where_it_runs,
)
from app.core.workflow import ModelRef, PreflightResult

CONFIG = FleetConfig(
    master=MasterConfig(comfyui_dir="/opt/ComfyUI"),
    workers=(
        WorkerConfig("gpu1", WorkerKind.LOCAL, port=8189),
        WorkerConfig("lan-box", WorkerKind.REMOTE, host="127.0.0.20"),
        WorkerConfig("pod", WorkerKind.CLOUD, host="pod-a.invalid", port=443),
    ),
)
UNREACHED = PreflightResult("x", error="could not ask it: connection refused")
MISSING = PreflightResult(
    "x",
    missing_nodes=("DistributedCollector",),
    missing_models=(ModelRef("loras", "a.safetensors"),),
)


def test_where_each_participant_runs() -> None:
    assert [where_it_runs(CONFIG, n) for n in ("master", "gpu1", "lan-box", "pod")] == [
        Where.LOCAL,
        Where.LOCAL,
        Where.REMOTE,
        Where.CLOUD,
    ]
    assert where_it_runs(FleetConfig(), "master") is Where.ELSEWHERE  # connected to, not launched


def test_an_unreachable_local_instance_gets_advice_for_its_process_state() -> None:
    restarting = preflight_advice(UNREACHED, Where.LOCAL, "restarting")
    assert restarting.startswith("ComfyFleet is restarting it after a crash")
    assert preflight_advice(UNREACHED, Where.LOCAL, "stopped") == (
        "Start it (or Start all), then run again"
    )
    assert "look at its log" in preflight_advice(UNREACHED, Where.LOCAL, "crash loop")
    assert preflight_advice(UNREACHED, Where.LOCAL) == "look at its log (Logs), then run again"
    assert set(LOCAL_UNREACHABLE.values()).isdisjoint(UNREACHABLE.values())
    assert "--listen" in preflight_advice(UNREACHED, Where.REMOTE, "restarting")  # not ours
    assert "Cloud panel" in preflight_advice(UNREACHED, Where.CLOUD)
    assert "Master…" in preflight_advice(UNREACHED, Where.ELSEWHERE)


def test_missing_nodes_and_models_say_where_they_go() -> None:
    local = preflight_advice(MISSING, Where.LOCAL, folder="/opt/ComfyUI")
    assert local == (
        "install the nodes into /opt/ComfyUI/custom_nodes (ComfyUI-Manager does it) and Restart: "
        "every local instance runs from that install; put the models into /opt/ComfyUI/models "
        "(every local instance shares them)"
    )
    assert "on that machine" in preflight_advice(MISSING, Where.REMOTE)
    assert "network volume" in preflight_advice(MISSING, Where.CLOUD)
    assert preflight_advice(PreflightResult("x"), Where.CLOUD) == ""  # ready: nothing to do
