"""The queue's pure parts: items from a job, sweeps, and who gets the next item."""

from __future__ import annotations

import random

import pytest

from app.core.queue import (
    MAX_SEED,
    ItemSpec,
    JobSpec,
    Lane,
    QueueError,
    SeedPolicy,
    SpeedBook,
    expand,
    item_workflow,
    parse_sweep,
    plan,
    workflow_key,
)

WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
    "9": {"class_type": "DistributedSeed", "inputs": {"seed": 5}},
    "10": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 5}},
}


def test_count_items_get_consecutive_seeds_in_every_seed_input() -> None:
    items = expand(JobSpec("j", WORKFLOW, 3, seed=100))
    assert [i.seed for i in items] == [100, 101, 102]
    made = item_workflow(WORKFLOW, items[2])
    assert [
        made[n]["inputs"][k] for n, k in (("3", "seed"), ("9", "seed"), ("10", "noise_seed"))
    ] == [102] * 3
    assert WORKFLOW["3"]["inputs"]["seed"] == 5  # the job's own workflow is left as it was


def test_seed_policies_and_the_workflows_own_seed() -> None:
    assert [i.seed for i in expand(JobSpec("j", WORKFLOW, 2))] == [5, 6]
    assert [i.seed for i in expand(JobSpec("j", WORKFLOW, 3, 9, SeedPolicy.FIXED))] == [9, 9, 9]
    randoms = [
        i.seed for i in expand(JobSpec("j", WORKFLOW, 3, 9, SeedPolicy.RANDOM), random.Random(1))
    ]
    assert len(set(randoms)) == 3 and all(0 <= s <= MAX_SEED for s in randoms)
    assert expand(JobSpec("j", WORKFLOW, 1, MAX_SEED))[0].seed == MAX_SEED
    with pytest.raises(QueueError, match="at least 1"):
        expand(JobSpec("j", WORKFLOW, 0))
    with pytest.raises(QueueError, match="between 0"):
        expand(JobSpec("j", WORKFLOW, 1, -1))


def test_sweeps_multiply_the_items_and_set_their_inputs() -> None:
    sweep = parse_sweep("3.steps=20,30", WORKFLOW)
    assert sweep.values == (20, 30)
    items = expand(JobSpec("j", WORKFLOW, 2, seed=1, sweeps=(sweep,)))
    assert [(i.seed, i.overrides) for i in items] == [
        (1, (("3", "steps", 20),)),
        (1, (("3", "steps", 30),)),
        (2, (("3", "steps", 20),)),
        (2, (("3", "steps", 30),)),
    ]
    assert item_workflow(WORKFLOW, items[1])["3"]["inputs"]["steps"] == 30
    assert parse_sweep("4.ckpt_name=a.safetensors,b", WORKFLOW).values == ("a.safetensors", "b")
    for bad, why in (
        ("3.steps", "NODE.INPUT=a,b,c"),
        ("7.steps=1", "no node '7'"),
        ("3.cfg=1", "no input 'cfg'"),
    ):
        with pytest.raises(QueueError, match=why):
            parse_sweep(bad, WORKFLOW)


def test_speeds_are_per_workflow_and_the_seed_is_not_part_of_it() -> None:
    other = item_workflow(WORKFLOW, ItemSpec(0, 77))
    assert workflow_key(other) == workflow_key(WORKFLOW)
    assert workflow_key(
        item_workflow(WORKFLOW, ItemSpec(0, 77, (("3", "steps", 40),)))
    ) != workflow_key(WORKFLOW)
    book = SpeedBook()
    assert book.guess("a", "k") == 1.0
    book.learn("a", "k", 2.0)
    book.learn("a", "k", 4.0)
    assert book.estimate("a", "k") == pytest.approx(2.6)
    assert book.guess("new", "k") == pytest.approx(2.6)  # a newcomer is tried as the fastest


def test_the_plan_fills_room_and_keeps_the_tail_for_whoever_finishes_first() -> None:
    fast, slow = Lane("fast", 0, 0.0, 1.0), Lane("slow", 0, 0.0, 4.0)
    assert plan([fast, slow], waiting=100) == ["fast", "fast", "slow", "slow"]
    # the last item: the busy fast card finishes it (at 2 s) before the idle slow one (4 s)
    assert plan([Lane("fast", 2, 1.0, 1.0), slow], waiting=1) == []
    assert plan([Lane("fast", 2, 4.0, 1.0), slow], waiting=1) == ["slow"]
    assert plan([fast, slow], waiting=0) == [] and plan([Lane("f", 2, 1, 1)], waiting=5) == []
