"""The fleet queue's domain: jobs made of items, how a job varies its workflow, and who gets the
next item (earliest expected finish, by measured speed). Pure: no I/O, no clock of its own."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.core.errors import ComfyFleetError
from app.core.workflow import Workflow

SEED_INPUTS = frozenset({"seed", "noise_seed"})  # KSampler, KSamplerAdvanced, DistributedSeed …
MAX_SEED = 2**64 - 1  # ComfyUI's seed inputs take 0 … 0xffffffffffffffff
DEPTH = 2  # items out per instance: the running one and one waiting in its own queue
MAX_ITEMS = 100_000  # one job's items (count × sweep values): a queue of a day on 8 fast GPUs
MAX_PRIORITY = 1_000_000
MAX_ATTEMPTS = 3  # an item lost this many times (its participant died) fails with the cause


class ItemState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"  # in the instance's own queue
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


OUT = (ItemState.SENT, ItemState.RUNNING)
ENDED = (ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED)


class SeedPolicy(StrEnum):
    FIXED = "fixed"  # every item the same seed (sweeps vary something else)
    INCREMENT = "increment"  # seed, seed+1, …
    RANDOM = "random"


class QueueError(ComfyFleetError):
    """A job that cannot be queued as asked, said in plain words."""


@dataclass(frozen=True)
class Sweep:
    """`--vary NODE.INPUT=a,b,c`: every item is made once per value."""

    node: str
    input: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class ItemSpec:
    index: int
    seed: int | None
    overrides: tuple[tuple[str, str, Any], ...] = ()  # (node, input, value)


@dataclass(frozen=True)
class JobSpec:
    name: str
    workflow: Workflow
    count: int = 1
    seed: int | None = None  # None: the workflow's own seed
    policy: SeedPolicy = SeedPolicy.INCREMENT
    sweeps: tuple[Sweep, ...] = ()
    workers: tuple[str, ...] | None = None  # None: every enabled participant
    priority: int = 0  # higher runs first
    out_dir: str | None = None


def check_job(spec: JobSpec) -> None:
    """QueueError, naming the field, for a job that must not be queued as asked."""
    if not 1 <= spec.count <= MAX_ITEMS:
        raise QueueError(f"--count {spec.count}: give 1 to {MAX_ITEMS:,} items")
    total = spec.count
    for sweep in spec.sweeps:
        total *= len(sweep.values)
    if total > MAX_ITEMS:
        raise QueueError(
            f"{total:,} items (--count × the --vary values): one job takes at most {MAX_ITEMS:,}"
        )
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise QueueError(f"--priority {spec.priority}: give -{MAX_PRIORITY:,} to {MAX_PRIORITY:,}")
    if spec.seed is not None and not 0 <= spec.seed <= MAX_SEED:
        raise QueueError(f"--seed {spec.seed}: ComfyUI's seeds are 0 to {MAX_SEED}")
    if not spec.name.strip() or any(not ch.isprintable() for ch in spec.name):
        raise QueueError(f"--name {spec.name!r}: give a name of printable characters")


def parse_sweep(text: str, workflow: Workflow, object_info: dict[str, Any] | None = None) -> Sweep:
    """ "3.steps=20,30" or "3.sampler_name=euler,dpmpp_2m": numbers stay numbers."""
    target, sep, values = text.partition("=")
    node, dot, name = target.strip().partition(".")
    if not sep or not dot or not node or not name or not values.strip():
        raise QueueError(f"--vary {text!r}: write it as NODE.INPUT=a,b,c (e.g. 3.steps=20,30)")
    if node not in workflow:
        raise QueueError(f"--vary {text!r}: the workflow has no node {node!r}")
    if name not in workflow[node].get("inputs", {}):
        kind = workflow[node].get("class_type", "?")
        raise QueueError(f"--vary {text!r}: node {node} ({kind}) has no input {name!r}")
    sweep = Sweep(node, name, tuple(_value(v.strip()) for v in values.split(",")))
    spec = _input_spec(object_info, workflow[node].get("class_type"), name)
    for value in sweep.values:
        problem = _misfit(value, workflow[node]["inputs"][name], spec)
        if problem:
            raise QueueError(f"--vary {text!r}: {value!r} {problem}")
    return sweep


def _input_spec(object_info: dict[str, Any] | None, class_type: Any, name: str) -> list[Any]:
    """[type or choices, options] of an input, from /object_info; [] when unknown."""
    node = (object_info or {}).get(str(class_type))
    if not isinstance(node, dict):
        return []
    inputs = node.get("input") or {}
    for group in ("required", "optional"):
        found = (inputs.get(group) or {}).get(name)
        if isinstance(found, list) and found:
            return found
    return []


def _misfit(value: Any, current: Any, spec: list[Any]) -> str:
    """Why a sweep value does not fit the input ("" if it does): its type in /object_info when
    known (INT, FLOAT with their min and max, a list of choices), else the current value's."""
    kind = spec[0] if spec else _kind_of(current)
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, list) or kind == "COMBO":
        choices = kind if isinstance(kind, list) else options.get("options", [])
        shown = ", ".join(map(str, choices[:8])) + (" …" if len(choices) > 8 else "")
        return "" if value in choices else f"is none of the choices ({shown})"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "BOOLEAN":
        return "" if isinstance(value, bool) else "is not true or false"
    if kind == "INT" and not (number and float(value).is_integer()):
        return "is not a whole number"
    if kind == "FLOAT" and not number:
        return "is not a number"
    if number and "min" in options and value < options["min"]:
        return f"is below the input's minimum {options['min']}"
    if number and "max" in options and value > options["max"]:
        return f"is above the input's maximum {options['max']}"
    return ""


def _kind_of(current: Any) -> str | None:
    if isinstance(current, bool):
        return "BOOLEAN"
    if isinstance(current, int):
        return "INT"
    return "FLOAT" if isinstance(current, float) else None


def _value(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | str | bool) else text


def seed_inputs(workflow: Workflow) -> list[tuple[str, str]]:
    """Every (node, input) holding a seed as a number (a linked seed follows its source)."""
    return [
        (node_id, name)
        for node_id, node in workflow.items()
        for name, value in node.get("inputs", {}).items()
        if name in SEED_INPUTS and isinstance(value, int) and not isinstance(value, bool)
    ]


def expand(spec: JobSpec, rng: random.Random | None = None) -> list[ItemSpec]:
    """The job's items: `count` seeds for every combination of the sweeps' values."""
    if spec.count < 1:
        raise QueueError(f"--count must be at least 1 (got {spec.count})")
    seeds = seed_inputs(spec.workflow)
    first = spec.seed
    if first is None and seeds:
        first = int(spec.workflow[seeds[0][0]]["inputs"][seeds[0][1]])
    if first is not None and not 0 <= first <= MAX_SEED:
        raise QueueError(f"--seed must be between 0 and {MAX_SEED} (got {first})")
    rng = rng or random.Random()
    combos = list(
        itertools.product(*([(s.node, s.input, v) for v in s.values] for s in spec.sweeps))
    )
    items: list[ItemSpec] = []
    for n in range(spec.count):
        seed = None if first is None else _seed(spec.policy, first, n, rng)
        for combo in combos:
            items.append(ItemSpec(len(items), seed, tuple(combo)))
    return items


def _seed(policy: SeedPolicy, first: int, n: int, rng: random.Random) -> int:
    if policy is SeedPolicy.FIXED:
        return first
    if policy is SeedPolicy.RANDOM:
        return rng.randint(0, MAX_SEED)
    return (first + n) % (MAX_SEED + 1)


def item_workflow(workflow: Workflow, item: ItemSpec, tag: str = "") -> Workflow:
    """The workflow one item runs: its seed in every seed input, its sweep values set, and with
    a `tag` its saving nodes' filename_prefix made its own (ComfyUI names a file from what the
    folder holds: two instances saving one prefix into one folder can write the same name).
    Only the nodes it changes are copied (the others are shared with `workflow`: don't mutate
    them)."""
    made = dict(workflow)
    seeds = [] if item.seed is None else [(n, k, item.seed) for n, k in seed_inputs(workflow)]
    prefixes = [
        (node_id, "filename_prefix", f"{node['inputs']['filename_prefix']}_{tag}")
        for node_id, node in workflow.items()
        if tag and isinstance(node.get("inputs", {}).get("filename_prefix"), str)
    ]
    for node_id, name, value in [*seeds, *item.overrides, *prefixes]:
        node = made[node_id]
        if node is workflow[node_id]:
            node = made[node_id] = {**node, "inputs": dict(node.get("inputs", {}))}
        node["inputs"][name] = value
    return made


def workflow_key(workflow: Workflow) -> str:
    """What speeds are measured per: the workflow's shape, seeds and sweeps left out of it."""
    shape = {
        node_id: {
            "class_type": node.get("class_type"),
            "inputs": {k: v for k, v in node.get("inputs", {}).items() if k not in SEED_INPUTS},
        }
        for node_id, node in workflow.items()
    }
    text = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class SpeedBook:
    """Seconds per item, per participant and workflow, learned as items finish (EWMA)."""

    alpha: float = 0.3
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)

    def learn(self, participant: str, key: str, took_s: float) -> None:
        old = self.seconds.get((participant, key))
        took_s = max(took_s, 1e-3)
        self.seconds[(participant, key)] = (
            took_s if old is None else old + self.alpha * (took_s - old)
        )

    def estimate(self, participant: str, key: str) -> float | None:
        return self.seconds.get((participant, key))

    def guess(self, participant: str, key: str) -> float:
        """Known, else the fastest known for this workflow (so a newcomer gets tried), else 1 s."""
        known = self.estimate(participant, key)
        if known is not None:
            return known
        others = [s for (p, k), s in self.seconds.items() if k == key]
        return min(others) if others else 1.0


@dataclass(frozen=True)
class Lane:
    """One participant as the scheduler sees it now."""

    name: str
    out: int  # items it holds (running + waiting in its queue)
    busy_for_s: float  # expected seconds until what it holds is done
    seconds_per_item: float


def plan(lanes: Sequence[Lane], waiting: int, depth: int = DEPTH) -> list[str]:
    """Who gets the next items now, in queue order: list scheduling by earliest expected finish.

    Every waiting item in turn goes to the lane that would finish it first. Items that land on a
    lane that has room are sent now; the rest wait, so that the tail of a job goes to whoever
    finishes it first (a slow card is not handed the last image while fast ones are nearly free).
    Stops once every lane with room has been considered, so it costs little however long the
    queue is."""
    room = {lane.name: depth - lane.out for lane in lanes if lane.out < depth}
    if not room or waiting <= 0:
        return []
    heap = [(lane.busy_for_s + lane.seconds_per_item, n, lane) for n, lane in enumerate(lanes)]
    heapq.heapify(heap)
    chosen: list[str] = []
    assigned = 0  # items given out in this plan, sent now or held for a busy lane
    while heap and assigned < waiting and room:
        finish, n, lane = heapq.heappop(heap)
        assigned += 1
        if lane.name in room:
            chosen.append(lane.name)
            room[lane.name] -= 1
            if room[lane.name] == 0:
                del room[lane.name]
        heapq.heappush(heap, (finish + lane.seconds_per_item, n, lane))
    return chosen


def eta_s(remaining: int, lanes: Iterable[Lane]) -> float | None:
    """Seconds until `remaining` items are done at the lanes' summed rate."""
    rate = sum(1 / lane.seconds_per_item for lane in lanes if lane.seconds_per_item > 0)
    return remaining / rate if rate and remaining else (0.0 if not remaining else None)


def duration_text(seconds: float | None) -> str:
    """An ETA as people read it: "45s", "3m 05s"; "—" when not known yet."""
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m {secs:02}s" if minutes else f"{secs}s"
