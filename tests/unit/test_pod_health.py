"""A pod's ComfyUI behind Runpod's proxy: 502 while nothing listens there means it is starting
(REFERENCE §8), not that it is down — for pods only, and not once it was up."""

from __future__ import annotations

from app.core.health import (
    POD_STARTING,
    Failure,
    ProbeError,
    ProbeResult,
    WorkerHealth,
    WorkerState,
    apply_probe,
)

BAD_GATEWAY = ProbeResult(error=ProbeError(Failure.SERVER_ERROR, "HTTP 502"))


def health(state: WorkerState) -> WorkerHealth:
    return WorkerHealth("pod-a", "cloud", "https://abc-8188.proxy.runpod.net", state)


def test_a_pod_answering_502_is_starting() -> None:
    after = apply_probe(health(WorkerState.STARTING), BAD_GATEWAY, 10.0, pod=True)
    assert (after.state, after.error) == (WorkerState.STARTING, POD_STARTING)


def test_other_workers_answering_502_are_offline() -> None:
    after = apply_probe(health(WorkerState.STARTING), BAD_GATEWAY, 10.0)
    assert after.state is WorkerState.OFFLINE and str(after.error).startswith("HTTP 502 — ")


def test_a_pod_that_was_up_and_answers_502_twice_is_down() -> None:
    once = apply_probe(health(WorkerState.ONLINE), BAD_GATEWAY, 10.0, misses=2, pod=True)
    assert once.state is WorkerState.OFFLINE
