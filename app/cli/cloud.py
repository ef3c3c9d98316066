"""`comfy-fleet cloud …`: Runpod pods from the command line (REFERENCE §8)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp

from app.cli.common import EXIT_FAILURE, EXIT_OK, UsageError
from app.cli.jobs import Interrupted, stop_on_signals, unless_stopped
from app.core.cloud import ACTIONS, Pod, fleet_cost_per_h, money, uptime_text
from app.core.config import FleetConfig
from app.core.names import printable
from app.services.runpod import API_KEY, RunpodClient, RunpodError, stored_key
from app.services.secrets import SecretStore
from app.services.storage import ConfigStore

T = TypeVar("T")
MAX_TAIL = 5000  # the spec's LogTail maximum


def add_cloud_commands(commands: Any) -> None:
    cloud = commands.add_parser("cloud", help="rent, watch and release Runpod GPUs")
    verbs = cloud.add_subparsers(dest="verb", metavar="VERB", required=True)
    login = verbs.add_parser("login", help="store the Runpod API key in the keyring")
    login.add_argument("provider", choices=["runpod"])
    pods = verbs.add_parser("pods", help="the pods: GPU, state, cost per hour, uptime")
    pods.add_argument("--json", action="store_true")
    for verb in ACTIONS:
        acted = verbs.add_parser(verb, help=f"{verb} a pod (by id or name)")
        acted.add_argument("pod")
        if verb == "terminate":
            acted.add_argument("--yes", action="store_true", help="do not ask")
    create = verbs.add_parser("create", help="rent a pod from the recipe (flags override it)")
    create.add_argument("--name", help="default: comfyfleet-<time>")
    create.add_argument("--gpu", help="a GPU type id from `cloud gpus`")
    create.add_argument("--count", type=int, help="GPUs in the pod")
    source = create.add_mutually_exclusive_group()
    source.add_argument("--image", help="a container image instead of the template")
    source.add_argument("--template", help="a Runpod template id (default: ComfyUI-Distributed's)")
    create.add_argument("--community", action="store_true", help="community cloud (cheaper)")
    create.add_argument("--volume", help="a network volume id, mounted at /workspace")
    create.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--json", action="store_true")
    logs = verbs.add_parser("logs", help="a pod's recent log lines")
    logs.add_argument("pod")
    logs.add_argument("-n", type=int, default=100, help=f"lines (default 100, at most {MAX_TAIL})")
    logs.add_argument("--follow", action="store_true", help="then new lines, until Ctrl-C")
    cost = verbs.add_parser("cost", help="now per hour, today and this month")
    cost.add_argument("--json", action="store_true")
    verbs.add_parser("gpus", help="the GPU types with their prices")
    guard = verbs.add_parser("guard", help="the guards and the elastic policy (shown, or set)")
    guard.add_argument("--idle-minutes", type=float, help="stop a pod idle this long (0: never)")
    guard.add_argument("--daily-budget", type=float, metavar="USD", help="0: no limit")
    guard.add_argument("--elastic", choices=["on", "off"])
    guard.add_argument("--elastic-wait-minutes", type=float)
    guard.add_argument("--elastic-max-pods", type=int)


def cloud_command(
    args: argparse.Namespace,
    store: ConfigStore,
    config: FleetConfig,
    secrets: SecretStore | None = None,
) -> int:
    secrets = secrets or SecretStore()
    if args.verb == "login":
        return _login(config, secrets)
    if args.verb == "guard":
        return _guard(args, store, config)
    _check_args(args)
    key = stored_key(secrets)
    verb: Callable[[RunpodClient], Awaitable[int]] = {
        "pods": lambda c: _pods(c, args.json),
        "create": lambda c: _create(c, args, config),
        "logs": lambda c: _logs(c, args.pod, args.n, args.follow),
        "cost": lambda c: _cost(c, args.json),
        "gpus": _gpus,
    }.get(args.verb) or (lambda c: _act(c, args))
    return _with_client(config, key, verb)


def _with_client(config: FleetConfig, key: str, work: Callable[[RunpodClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with aiohttp.ClientSession() as session:
            return await work(RunpodClient(session, key, config.cloud.runpod_api_url))

    return asyncio.run(run())


def _guard(args: argparse.Namespace, store: ConfigStore, config: FleetConfig) -> int:
    changes: dict[str, Any] = {}
    for option, name in (
        ("idle_minutes", "idle_stop_min"),
        ("daily_budget", "daily_budget_usd"),
        ("elastic_wait_minutes", "elastic_wait_min"),
        ("elastic_max_pods", "elastic_max_pods"),
    ):
        value = getattr(args, option)
        if value is not None:
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"--{option.replace('_', '-')} {value}: give a number, 0 or more")
            changes[name] = value
    if args.elastic:
        changes["elastic"] = args.elastic == "on"
    cloud = dataclasses.replace(config.cloud, **changes)
    if changes:
        store.save(dataclasses.replace(config, cloud=cloud))
    idle = f"after {cloud.idle_stop_min:g} min" if cloud.idle_stop_min else "never"
    budget = money(cloud.daily_budget_usd) if cloud.daily_budget_usd else "none"
    elastic = (
        f"on: past {cloud.elastic_wait_min:g} min of queue, up to {cloud.elastic_max_pods} pod(s)"
        if cloud.elastic
        else "off"
    )
    print(f"idle pods stopped: {idle}; daily budget: {budget}; elastic: {elastic}")
    return EXIT_OK


def _login(config: FleetConfig, secrets: SecretStore) -> int:
    if sys.stdin.isatty():
        key = getpass.getpass("Runpod API key (hidden): ").strip()
    else:
        key = sys.stdin.readline().strip()
    if not key:
        raise UsageError("no key given")
    if not key.isascii() or not key.isprintable() or " " in key:
        raise UsageError("the key has characters no Runpod API key has (spaces, control codes)")
    try:
        pods = _with_client(config, key, lambda c: c.pods())
    except RunpodError as exc:
        print(f"Not stored: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    secrets.set(API_KEY, key)
    print(f"Stored the Runpod API key in the system keyring ({len(pods)} pod(s) on the account).")
    if (source := secrets.source(API_KEY)) != "keyring":  # handed over: that one is used
        print(f"Note: the key in the {source} is used while it is set.")
    return EXIT_OK


def pod_json(pod: Pod) -> dict[str, Any]:
    return {**dataclasses.asdict(pod), "gpu_util": list(pod.gpu_util), "actions": list(pod.actions)}


async def _pods(client: RunpodClient, as_json: bool) -> int:
    pods = await client.pods()
    if as_json:
        print(
            json.dumps({"pods": [pod_json(p) for p in pods], "cost_per_h": fleet_cost_per_h(pods)})
        )
        return EXIT_OK
    if not pods:
        print("no pods (`comfy-fleet cloud create` rents one)")
        return EXIT_OK
    for pod in pods:
        util = "/".join(f"{u}%" for u in pod.gpu_util) or "—"
        print(
            f"{pod.id}\t{pod.name}\t{pod.gpu_count}× {pod.gpu_type}\t{pod.status}\t"
            f"{money(pod.cost_per_h)}/h\tup {uptime_text(pod.uptime_s)}\tGPU {util}"
        )
    print(f"{len(pods)} pod(s), {money(fleet_cost_per_h(pods))}/h now")
    return EXIT_OK


async def _find(client: RunpodClient, wanted: str) -> Pod:
    pods = await client.pods()
    found = [p for p in pods if p.id == wanted] or [p for p in pods if p.name == wanted]
    if not found:
        raise UsageError(f"no pod {wanted!r} (see `comfy-fleet cloud pods`)")
    if len(found) > 1:
        raise UsageError(f"{len(found)} pods are called {wanted!r}: give its id")
    return found[0]


async def _act(client: RunpodClient, args: argparse.Namespace) -> int:
    pod = await _find(client, args.pod)
    if args.verb == "terminate" and not args.yes:
        question = (
            f"Terminate pod {pod.name} ({pod.id}, {pod.gpu_count}× {pod.gpu_type})? "
            "Its disk is deleted; this cannot be undone. [y/N] "
        )
        if not sys.stdin.isatty() or input(question).strip().lower() != "y":
            print(f"Not terminated {pod.name}: answer y, or pass --yes.", file=sys.stderr)
            return EXIT_FAILURE
    after = await client.act(pod.id, args.verb)
    state = "terminated" if after is None else f"{after.status}, {money(after.cost_per_h)}/h"
    print(f"{args.verb}: {pod.name} ({pod.id}) → {state}")
    return EXIT_OK


async def _create(client: RunpodClient, args: argparse.Namespace, config: FleetConfig) -> int:
    recipe = config.cloud.recipe
    changes: dict[str, Any] = {}
    if args.gpu:
        changes["gpu_type"] = args.gpu
    if args.count is not None:
        changes["gpu_count"] = args.count
    if args.image:
        changes.update(image=args.image, template_id=None)
    if args.template:
        changes.update(template_id=args.template, image=None)
    if args.community:
        changes["cloud"] = "COMMUNITY"
    if args.volume:
        changes["network_volume"] = args.volume
    if args.env:
        pairs = [e.partition("=") for e in args.env]
        if any(not key or not sep for key, sep, _ in pairs):
            raise UsageError("--env takes KEY=VALUE")
        changes["env"] = (*recipe.env, *((k, v) for k, _, v in pairs))
    recipe = dataclasses.replace(recipe, **changes)
    name = args.name or f"comfyfleet-{time.strftime('%Y%m%d-%H%M%S')}"
    pod = await client.create(recipe, name)
    if args.json:
        print(json.dumps(pod_json(pod)))
    else:
        print(f"created {pod.name} ({pod.id}): {pod.gpu_count}× {pod.gpu_type}, {pod.status}, "
              f"{money(pod.cost_per_h)}/h")  # fmt: skip
    return EXIT_OK


async def _logs(client: RunpodClient, wanted: str, lines: int, follow: bool) -> int:
    pod = await _find(client, wanted)
    if not follow:
        for line in await client.logs(pod.id, lines):
            print(printable(line))
        return EXIT_OK

    async def print_as_they_come() -> None:
        async with contextlib.aclosing(client.follow_logs(pod.id, lines)) as stream:
            async for line in stream:
                print(printable(line), flush=True)

    with contextlib.suppress(Interrupted):  # Ctrl-C or SIGTERM: the end of following
        await unless_stopped(print_as_they_come(), stop_on_signals())
    return EXIT_OK


def _check_args(args: argparse.Namespace) -> None:
    """Bad input refused before Runpod is asked (the spec's limits: a pod has 1 GPU or more,
    a log backfill is at most 5000 lines)."""
    if args.verb == "create":
        if args.count is not None and args.count < 1:
            raise UsageError(f"--count {args.count}: a pod has 1 GPU or more")
        for option in ("image", "template", "gpu", "volume", "name"):
            value = getattr(args, option)
            if value is not None and (not value.strip() or not value.isprintable()):
                raise UsageError(f"--{option} {value!r}: give a name of printable characters")
    if args.verb == "logs" and not 1 <= args.n <= MAX_TAIL:
        raise UsageError(f"-n {args.n}: give 1 to {MAX_TAIL} lines")


async def _cost(client: RunpodClient, as_json: bool) -> int:
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    pods = await client.pods()
    today, this_month = await client.pod_costs(day), await client.pod_costs(month)
    figures = {
        "cost_per_h": fleet_cost_per_h(pods),
        "today": today.total,
        "this_month": this_month.total,
        "running": sum(1 for p in pods if p.cost_per_h > 0),
    }
    if as_json:
        print(json.dumps(figures))
        return EXIT_OK
    print(
        f"now {money(figures['cost_per_h'])}/h ({figures['running']} pod(s) billing); "
        f"today {money(today.total)}; this month {money(this_month.total)}"
    )
    return EXIT_OK


async def _gpus(client: RunpodClient) -> int:
    for gpu in sorted(await client.gpu_types(), key=lambda g: g.secure_per_h):
        print(
            f"{gpu.id}\t{gpu.memory_gb} GB\tsecure {money(gpu.secure_per_h)}/h\t"
            f"community {money(gpu.community_per_h)}/h"
        )
    return EXIT_OK
