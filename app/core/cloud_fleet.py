"""Runpod pods as workers of the fleet: a RUNNING pod that exposes ComfyUI's port joins as a
cloud worker (its proxy address, port 443); a pod that stops or goes away leaves. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from urllib.parse import urlsplit

from app.core.cloud import COMFY_PORT, Pod
from app.core.config import FleetConfig, WorkerConfig, WorkerKind

POD_ID_PREFIX = "runpod-"  # a pod's worker is known by "runpod-<pod id>"


def pod_id_of(worker: WorkerConfig) -> str | None:
    return worker.distributed_id.removeprefix(POD_ID_PREFIX) if is_pod(worker) else None


def worker_of_pod(config: FleetConfig, pod: Pod) -> WorkerConfig | None:
    """The worker a pod joined the fleet as (None while it has not)."""
    return next((w for w in config.workers if pod_id_of(w) == pod.id), None)


def is_pod(worker: WorkerConfig) -> bool:
    return worker.distributed_id.startswith(POD_ID_PREFIX)


def pod_worker(pod: Pod, proxy: str, name: str) -> WorkerConfig | None:
    """The worker a pod is, while it runs with ComfyUI's port exposed over HTTP."""
    if pod.status != "RUNNING" or f"{COMFY_PORT}/http" not in pod.ports:
        return None
    try:
        address = urlsplit(pod.url(proxy))
        host, port = address.hostname or "", address.port
    except (ValueError, KeyError, IndexError):  # a proxy form that makes no address of it
        return None
    identity = f"{POD_ID_PREFIX}{pod.id}"
    if address.scheme == "https" and port in (None, 443):
        return WorkerConfig(name, WorkerKind.CLOUD, host, 443, distributed_id=identity)
    # a proxy form of plain HTTP on a port of its own (a stand-in on this machine)
    return WorkerConfig(name, WorkerKind.REMOTE, host, port or 80, distributed_id=identity)


def with_pods(config: FleetConfig, pods: Sequence[Pod], proxy: str) -> FleetConfig:
    """The fleet with a worker for every running pod and none for pods that do not run."""
    running = {p.id: p for p in pods}
    kept: list[WorkerConfig] = []
    for worker in config.workers:
        pod_id = pod_id_of(worker)
        if pod_id is None:
            kept.append(worker)
            continue
        pod = running.get(pod_id)
        if pod is not None and pod_worker(pod, proxy, worker.name) is not None:
            kept.append(worker)
            del running[pod_id]
    taken = {w.name.casefold() for w in kept}
    for pod in running.values():
        name = pod.name if pod.name.casefold() not in taken else f"{pod.name} (pod {pod.id})"
        joined = pod_worker(pod, proxy, name)
        if joined is not None:
            kept.append(joined)
            taken.add(name.casefold())
    if kept == list(config.workers):
        return config
    return dataclasses.replace(config, workers=tuple(kept))
