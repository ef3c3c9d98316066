"""What to do about a participant that fails the preflight, in the terms of where it runs: a
local instance is ComfyFleet's own (it starts, restarts and shares this install's folders), a
remote one is on another machine, a cloud one is a pod, and a master not launched here is a
ComfyUI that runs on its own."""

from __future__ import annotations

from enum import StrEnum

from app.core.config import MASTER, FleetConfig, WorkerKind
from app.core.workflow import PreflightResult


class Where(StrEnum):
    LOCAL = "local"  # launched by ComfyFleet from the install: the master or a local worker
    ELSEWHERE = "elsewhere"  # the master ComfyFleet connects to (ComfyUI Desktop, another box)
    REMOTE = "remote"
    CLOUD = "cloud"


def where_it_runs(config: FleetConfig, name: str) -> Where:
    if name == MASTER:
        return Where.LOCAL if config.master.launched_by_app else Where.ELSEWHERE
    worker = config.worker(name)
    if worker is None or worker.kind is WorkerKind.LOCAL:
        return Where.LOCAL
    return Where.REMOTE if worker.kind is WorkerKind.REMOTE else Where.CLOUD


UNREACHABLE = {
    Where.ELSEWHERE: "check that ComfyUI runs at the master's address (Master… changes it)",
    Where.REMOTE: (
        "check that ComfyUI runs on that machine with --listen and that its port is open to "
        "this one; then run again"
    ),
    Where.CLOUD: (
        "check in the Cloud panel that the pod runs: its ComfyUI answers a few minutes after "
        "the pod starts; then run again"
    ),
}
LOCAL_UNREACHABLE = {  # by the state of ComfyFleet's own process
    "restarting": "ComfyFleet is restarting it after a crash: it rejoins by itself; run "
    "without it now, or wait until it is online",
    "starting": "it is starting: wait until it is online, or run without it",
    "stopped": "Start it (or Start all), then run again",
    "crash loop": "it keeps crashing, so ComfyFleet stopped restarting it: look at its log",
    "crashed": "it crashed: look at its log, then Start it",
}
INSTALL = {
    Where.LOCAL: (
        "install the nodes into {folder}/custom_nodes (ComfyUI-Manager does it) and Restart: "
        "every local instance runs from that install"
    ),
    Where.ELSEWHERE: "install the nodes into the master's ComfyUI and restart it",
    Where.REMOTE: "install the nodes on that machine (ComfyUI-Manager) and restart its ComfyUI",
    Where.CLOUD: "install the nodes in the pod, or in its template so new pods have them",
}
MODELS = {
    Where.LOCAL: "put the models into {folder}/models (every local instance shares them)",
    Where.ELSEWHERE: "put the models into the master's ComfyUI models folder",
    Where.REMOTE: "copy the models to that machine (Export missing models… writes a script)",
    Where.CLOUD: (
        "download the models in the pod, or onto its network volume so new pods have them "
        "(Export missing models… writes a script)"
    ),
}


def preflight_advice(
    check: PreflightResult, where: Where, state: str | None = None, folder: str = "the install"
) -> str:
    """`state`: a local instance's (ComfyFleet's process: "restarting", "stopped"…)."""
    if check.ok:
        return ""
    if check.error:
        if where is Where.LOCAL:
            return LOCAL_UNREACHABLE.get(state or "", "look at its log (Logs), then run again")
        return UNREACHABLE[where]
    steps = []
    if check.missing_nodes:
        steps.append(INSTALL[where].format(folder=folder))
    if check.missing_models:
        steps.append(MODELS[where].format(folder=folder))
    return "; ".join(steps)
