"""`comfy-fleet queue …`: the fleet queue from the command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from app.cli.common import EXIT_OK, UsageError
from app.cli.jobs import stop_on_signals
from app.cli.workflow import FILE_HELP, load_prompt
from app.core.config import FleetConfig
from app.core.names import printable
from app.core.queue import (
    ItemState,
    JobSpec,
    QueueError,
    SeedPolicy,
    duration_text,
    parse_sweep,
)
from app.core.queue_url import QueueUrlError, check_queue_url, shown_url
from app.services.dispatcher import Dispatcher
from app.services.paths import AppPaths
from app.services.queue_db import Job
from app.services.queue_lock import DispatcherLock
from app.services.queue_migrate import migrate
from app.services.queue_pg import PgQueueStore
from app.services.queue_service import FleetQueue, QueuePaths, dispatch_until, open_fleet_queue
from app.services.queue_store import QueueStore
from app.services.storage import ConfigStore
from app.services.workflow_source import node_list_if_known

PAGE = 200  # items a page of `queue show`
NOBODY = (
    "no dispatcher runs: it starts when you open the window, run `comfy-fleet up`, or "
    "`comfy-fleet queue run`"
)

UNREACHABLE_AFTER_S = 3.0  # queue run says that nobody answers after this long


def add_queue_commands(commands: Any) -> None:
    queue = commands.add_parser("queue", help="the fleet queue: jobs spread over every GPU")
    verbs = queue.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser("add", help="queue a job: a workflow, N seeds, sweeps")
    add.add_argument("workflow", type=Path, metavar="WORKFLOW", help=FILE_HELP)
    add.add_argument("--count", type=int, default=1, help="items (seeds) per sweep value")
    add.add_argument("--seed", type=int, help="first seed (default: the workflow's own)")
    add.add_argument(
        "--seed-policy", choices=[p.value for p in SeedPolicy], default=SeedPolicy.INCREMENT.value
    )
    add.add_argument(
        "--vary", action="append", default=[], metavar="NODE.INPUT=a,b,c", help="a sweep"
    )
    add.add_argument("--workers", help="comma-separated participants (default: all)")
    add.add_argument("--priority", type=int, default=0, help="higher runs first")
    add.add_argument("--out", type=Path, metavar="DIR", help="the job's images land in DIR")
    add.add_argument("--name", help="the job's name (default: the file's)")
    add.add_argument("--json", action="store_true")
    listing = verbs.add_parser("list", help="the jobs")
    listing.add_argument("--json", action="store_true")
    show = verbs.add_parser("show", help="one job and its items")
    show.add_argument("job", type=int)
    show.add_argument("--json", action="store_true")
    show.add_argument(
        "--page", type=int, default=1, metavar="K", help=f"page K of its items ({PAGE} a page)"
    )
    for verb, text in (("cancel", "cancel a job"), ("retry", "queue a job's failed items again")):
        verbs.add_parser(verb, help=text).add_argument("job", type=int)
    for verb in ("pause", "resume"):
        one = verbs.add_parser(verb, help=f"{verb} the queue (or one job)")
        one.add_argument("job", type=int, nargs="?")
    verbs.add_parser("watch", help="progress per job until every job has ended")
    verbs.add_parser("run", help="dispatch the queue here (headless)")
    move = verbs.add_parser(
        "migrate", help="move this desktop's local queue onto a PostgreSQL server, whole"
    )
    move.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/db")


def queue_command(
    args: argparse.Namespace, paths: AppPaths, store: ConfigStore, config: FleetConfig
) -> int:
    if args.verb == "migrate":
        return _migrate(args, paths, store, config)
    try:
        queue = open_fleet_queue(paths, config, args.queue_url)
    except QueueUrlError as exc:
        raise UsageError(str(exc)) from None
    try:
        verb = {
            "add": _add,
            "list": _list,
            "show": _show,
            "cancel": _cancel,
            "retry": _retry,
            "pause": _pause,
            "resume": _pause,
            "watch": lambda a, q, c: _watch(q),
            "run": _run,
        }[args.verb]
        return verb(args, queue, config)
    except KeyError as exc:
        raise UsageError(
            f"no job {exc.args[0]} in the queue (see `comfy-fleet queue list`)"
        ) from None
    except QueueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        queue.close()


def _migrate(
    args: argparse.Namespace, paths: AppPaths, store: ConfigStore, config: FleetConfig
) -> int:
    """The local queue's jobs onto the server, then this desktop's settings name it."""
    try:
        url = check_queue_url(args.to, "--to")
    except QueueUrlError as exc:
        raise UsageError(str(exc)) from None
    local = QueuePaths.under(paths.data_dir)
    source = QueueStore(local.db)
    target = PgQueueStore(url)
    try:
        moved = migrate(source, DispatcherLock(local.lock), target)
    finally:
        source.close()
        target.close()
    print(f"moved {moved.jobs} job(s) and {moved.items} item(s) to {shown_url(url)}")
    if moved.ids:
        pairs = ", ".join(f"{old}→{new}" for old, new in moved.ids.items())
        print(f"their numbers there: {pairs}")
    store.save(dataclasses.replace(config, app=dataclasses.replace(config.app, queue_url=url)))
    print(f"this desktop now uses that queue (app.queue_url); the local file was kept: {local.db}")
    return EXIT_OK


def _add(args: argparse.Namespace, queue: FleetQueue, config: FleetConfig) -> int:
    workflow, _ = load_prompt(args.workflow, config)
    workers = None
    if args.workers:
        workers = tuple(n.strip() for n in args.workers.split(",") if n.strip())
        known = {"master", *(w.name.casefold() for w in config.workers)}
        unknown = [n for n in workers if n.casefold() not in known]
        if unknown:
            raise UsageError(f"--workers: no participant called {', '.join(map(repr, unknown))}")
    object_info = _node_list(config) if args.vary else None
    spec = JobSpec(
        name=args.name or args.workflow.stem,
        workflow=workflow,
        count=args.count,
        seed=args.seed,
        policy=SeedPolicy(args.seed_policy),
        sweeps=tuple(parse_sweep(text, workflow, object_info) for text in args.vary),
        workers=workers,
        priority=args.priority,
        out_dir=str(args.out.absolute()) if args.out else None,
    )
    added = queue.add(spec)
    if args.json:
        print(json.dumps({"job": added.job, "items": added.items, "dispatcher": added.dispatcher}))
        return EXIT_OK
    folder = queue.store.job_brief(added.job).out_dir
    where = "" if Path(folder).is_absolute() else " (in the queue folder of whoever dispatches it)"
    print(f"job {added.job}: {added.items} item(s) queued → {folder}{where}")
    print(f"dispatched by {added.dispatcher}" if added.dispatcher else NOBODY, file=sys.stderr)
    return EXIT_OK


def _node_list(config: FleetConfig) -> dict[str, Any] | None:
    """The master's node list for checking --vary values, when it answers soon."""

    async def read() -> dict[str, Any] | None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return await node_list_if_known(session, config.master.url)

    return asyncio.run(read())


def job_json(job: Job, now: float) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "priority": job.priority,
        "total": job.total,
        "counts": {s.value: job.count(s) for s in ItemState},
        "eta_s": job.eta_s(now),
        "out_dir": job.out_dir,
        "note": job.note,
        "queued_by": job.queued_by,
    }


def _list(args: argparse.Namespace, queue: FleetQueue, config: FleetConfig) -> int:
    jobs, now = queue.store.jobs(), time.time()
    if args.json:
        print(
            json.dumps({"paused": queue.store.paused(), "jobs": [job_json(j, now) for j in jobs]})
        )
        return EXIT_OK
    if queue.store.paused():
        print("the queue is paused (`comfy-fleet queue resume`)")
    if not jobs:
        print("no jobs (`comfy-fleet queue add WORKFLOW --count N`)")
    for job in jobs:
        print(_line(job, now))
    return EXIT_OK


def _line(job: Job, now: float) -> str:
    done = job.count(ItemState.DONE)
    failed = job.count(ItemState.FAILED)
    eta = job.eta_s(now)
    name = printable(job.name)[:24]
    parts = [f"{job.id:>4}  {name:<24} {job.state:<9} {done}/{job.total} done"]
    if failed:
        parts.append(f"{failed} failed")
    if eta and job.ended is None:
        parts.append(f"ETA {duration_text(eta)}")
    if job.note:
        parts.append(printable(job.note))
    if job.queued_by:
        parts.append(f"by {printable(job.queued_by)}")
    return " · ".join(parts)


def _show(args: argparse.Namespace, queue: FleetQueue, config: FleetConfig) -> int:
    job, items = queue.store.job(args.job), queue.store.items(args.job)
    pages = max(1, -(-len(items) // PAGE))
    if not 1 <= args.page <= pages:
        raise UsageError(f"--page {args.page}: job {args.job} has page 1 to {pages}")
    items = items[(args.page - 1) * PAGE : args.page * PAGE]
    if args.json:
        found = job_json(job, time.time())
        found["items"] = [
            {
                "index": i.index,
                "seed": i.seed,
                "state": i.state.value,
                "participant": i.participant,
                "prompt_id": i.prompt_id,
                "attempts": i.attempts,
                "files": list(i.files),
                "error": i.error,
            }
            for i in items
        ]
        print(json.dumps(found))
        return EXIT_OK
    print(_line(job, time.time()))
    for i in items:
        where = f" on {printable(i.participant)}" if i.participant else ""
        why = f" — {printable(i.error)}" if i.error else ""
        print(f"  item {i.index:>4}  seed {i.seed}  {i.state.value}{where}{why}")
    if pages > 1:
        print(f"page {args.page} of {pages} (`--page K` for another)")
    return EXIT_OK


def _cancel(args: argparse.Namespace, queue: FleetQueue, config: FleetConfig) -> int:
    out = queue.store.cancel(args.job)
    running = f"; {len(out)} out on the fleet are being stopped" if out else ""
    print(f"job {args.job} cancelled{running}")
    if out and queue.lock.holder() is None:
        print("(they stop when a dispatcher runs: " + NOBODY.split(": ", 1)[1] + ")")
    return EXIT_OK


def _retry(args: argparse.Namespace, queue: FleetQueue, config: FleetConfig) -> int:
    print(f"job {args.job}: {queue.store.retry(args.job)} item(s) queued again")
    return EXIT_OK


def _pause(args: argparse.Namespace, queue: FleetQueue, config: FleetConfig) -> int:
    paused = args.verb == "pause"
    queue.store.set_paused(paused, args.job)
    what = "the queue" if args.job is None else f"job {args.job}"
    print(f"{what} {'paused: nothing new is sent' if paused else 'resumed'}")
    return EXIT_OK


def _watch(queue: FleetQueue) -> int:
    """A bar per job until every job has ended (Ctrl-C leaves it; the jobs go on)."""
    seen = -1
    try:
        while True:
            version = queue.store.data_version()
            if version != seen:
                seen = version
                jobs = [j for j in queue.store.jobs() if j.ended is None]
                for job in jobs:
                    print(_bar(job, time.time()), flush=True)
                if not jobs:
                    print("every job has ended")
                    return EXIT_OK
            time.sleep(0.5)
    except KeyboardInterrupt:
        return EXIT_OK


def _bar(job: Job, now: float, width: int = 30) -> str:
    ended = job.count(ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED)
    filled = int(width * ended / job.total) if job.total else width
    eta = job.eta_s(now)
    tail = f" ETA {duration_text(eta)}" if eta else ""
    bar = "#" * filled + "." * (width - filled)
    return f"job {job.id} {job.name[:20]:<20} [{bar}] {ended}/{job.total}{tail}"


def _run(args: argparse.Namespace, queue: FleetQueue, config: FleetConfig) -> int:
    async def dispatch() -> None:
        stop = stop_on_signals()
        last: dict[int, str] = {}
        printed = [0.0]
        dispatchers: list[Dispatcher] = []

        def report(dispatcher: Dispatcher) -> None:
            """Each job's line when it changed, at most twice a second."""
            dispatchers[:] = [dispatcher]
            if time.monotonic() - printed[0] < 0.5:
                return
            printed[0] = time.monotonic()
            for job in queue.store.jobs():
                line = _line(job, time.time())
                if last.get(job.id, line if job.ended else "") != line:
                    print(line, flush=True)
                last[job.id] = line

        count = 1 + sum(w.enabled for w in config.workers)
        print(f"dispatching the queue to {count} participant(s); Ctrl-C stops", flush=True)
        watch = asyncio.ensure_future(_say_unreachable(dispatchers))
        try:
            await dispatch_until(queue, config, "`comfy-fleet queue run`", stop, report, _say)
        finally:
            watch.cancel()

    asyncio.run(dispatch())
    return EXIT_OK


def _say(text: str) -> None:
    print(printable(text), flush=True)


async def _say_unreachable(dispatchers: list[Dispatcher]) -> None:
    """While no participant is reachable, say so (after a few seconds, again when a reason
    changes), and say when one is back: a headless queue never just looks idle."""
    said = ""
    await asyncio.sleep(UNREACHABLE_AFTER_S)
    while True:
        lanes = dispatchers[0].status() if dispatchers else []
        text = ""
        if lanes and not any(lane.online for lane in lanes):
            why = "; ".join(f"{lane.name}: {lane.problem or 'not connected yet'}" for lane in lanes)
            text = f"no participant is reachable ({why}); waiting for one…"
        if text != said:
            print(printable(text or "a participant is reachable: dispatching"), flush=True)
            said = text
        await asyncio.sleep(1.0)
