"""Distributed runs as the user follows them: participants, their progress, what they delivered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MASTER = "master"


class Phase(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Participant:
    name: str
    url: str
    worker_id: str | None = None  # ComfyUI-Distributed's id; None for the master


@dataclass(frozen=True)
class ImageRef:
    filename: str
    subfolder: str
    type: str

    def query(self) -> dict[str, str]:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


def output_images(history_entry: Mapping[str, Any]) -> list[ImageRef]:
    """The saved (type "output") images of one /history entry, in ComfyUI's order."""
    return [
        ImageRef(str(i["filename"]), str(i.get("subfolder", "")), str(i.get("type", "output")))
        for node in (history_entry.get("outputs") or {}).values()
        for i in node.get("images", [])
        if i.get("type", "output") == "output"
    ]


@dataclass
class Progress:
    """One participant's part of a run, updated from its websocket."""

    name: str
    phase: Phase = Phase.WAITING
    prompt_id: str = ""
    node: str = ""
    node_type: str = ""  # the node's class_type where the workflow names it
    value: int = 0
    maximum: int = 0
    images: list[ImageRef] = field(default_factory=list)
    error: str = ""
    seconds: float | None = None

    def describe(self) -> str:
        if self.phase is Phase.RUNNING and self.node:
            step = f" step {self.value}/{self.maximum}" if self.maximum else ""
            kind = f" {self.node_type}" if self.node_type else ""
            return f"node {self.node}{kind}{step}"
        return self.error or self.phase.value


@dataclass(frozen=True)
class Stopped:
    """What an interrupt did on one participant: its running part stopped, its waiting ones
    taken out of its queue (prompt ids), or why it could not be asked."""

    name: str
    interrupted: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    left: int = 0  # items of the run still in its queue when the interrupt gave up
    error: str = ""

    def describe(self) -> str:
        if self.error:
            return f"{self.name}: could not be asked ({self.error})"
        done = []
        if self.interrupted:
            done.append(f"interrupted {len(self.interrupted)} running")
        if self.removed:
            done.append(f"removed {len(self.removed)} waiting")
        said = ", ".join(done) or "nothing of this run was there"
        return f"{self.name}: {said}" + (f"; {self.left} still in its queue" if self.left else "")


@dataclass(frozen=True)
class Output:
    image: ImageRef
    participant: str  # "" when it cannot be told
    seed: int | None


@dataclass(frozen=True)
class RunResult:
    prompt_id: str
    worker_count: int
    outputs: tuple[Output, ...]
    skipped: tuple[str, ...]
    participants: tuple[Progress, ...]
    warnings: tuple[str, ...] = ()

    def delivered(self, name: str) -> bool:
        return any(o.participant == name for o in self.outputs)

    def as_json(self, saved: Sequence[str] = ()) -> dict[str, object]:
        """`saved`: where each output was written, in order (with `run --out`)."""
        outputs: list[dict[str, object]] = [
            {"file": o.image.filename, "participant": o.participant, "seed": o.seed}
            for o in self.outputs
        ]
        for output, path in zip(outputs, saved, strict=False):
            output["saved"] = path
        return {
            "prompt_id": self.prompt_id,
            "worker_count": self.worker_count,
            "outputs": outputs,
            "skipped": list(self.skipped),
        }


def seed_for(base: int | None, order: Sequence[str], name: str) -> int | None:
    """ComfyUI-Distributed's DistributedSeed: the master keeps the seed, worker i gets seed+i+1."""
    if base is None:
        return None
    if name == MASTER:
        return base
    return base + order.index(name) + 1 if name in order else None


def attribute_by_order(
    total: int, order: Sequence[str], counts: dict[str, int]
) -> list[str] | None:
    """Who made each of the master's `total` output images, or None when it cannot be told so.

    The collector puts the master's own images first, then each worker's in participant
    order. When the counts add up (the master made as many as a worker), that order is the
    answer; otherwise a worker did not deliver, and the caller compares pixels.
    """
    workers = [n for n in order if n != MASTER]
    own = total - sum(counts.get(n, 0) for n in workers)
    if own < 0 or own != counts.get(MASTER, own):
        return None
    names = [MASTER] * own
    for name in workers:
        names += [name] * counts.get(name, 0)
    return names
