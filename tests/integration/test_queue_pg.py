"""The fleet queue on a real PostgreSQL server (started in a temporary folder): the same schema
and answers as the SQLite file, claims, the lease, changes pushed by NOTIFY."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.core.queue import ItemState, JobSpec, expand
from app.core.queue_url import QUEUE_URL_ENV
from app.services.paths import resolve_paths
from app.services.queue_db import SCHEMA_VERSION, LeaseLost, QueueDb, QueueStoreError
from app.services.queue_pg import LEASE_S, PgQueueStore
from app.services.queue_service import QueuePaths
from app.services.queue_store import QueueStore
from tests.integration.test_queue import add, cli_done, fleet_file, nomodel
from tests.waiting import wait_until

pytestmark = pytest.mark.comfyui("0.3.64")  # (no simulated ComfyUI: once is enough)


class SimlessMaster:
    """A master's port where none runs: these tests dispatch nothing."""

    port = 8188


@pytest.fixture
def pg(pg_url: str) -> Any:
    store = PgQueueStore(pg_url)
    yield store
    store.close()


def test_both_stores_have_the_same_tables_and_columns(pg: PgQueueStore, tmp_path: Path) -> None:
    lite = QueueStore(tmp_path / "queue.db")
    for table in ("meta", "jobs", "items"):
        ours = [r[1] for r in lite._db.execute(f"PRAGMA table_info({table})")]
        theirs = [
            r[0]
            for r in pg._q(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'comfyfleet' AND table_name = ? ORDER BY ordinal_position",
                (table,),
            )
        ]
        assert theirs == ours, table
    assert pg._meta("schema_version") == lite._meta("schema_version") == str(SCHEMA_VERSION)


def _story(store: QueueDb, tmp_path: Path) -> list[Any]:
    """The same steps on either store; what it answers, without the clock's values."""
    first = add(store, tmp_path, 4, name="first", priority=1)
    second = add(store, tmp_path, 3, name="second", workers=("w1",))
    items = store.items(first)
    assert store.sent(items[0].id, "w1", "p0") and store.sent(items[1].id, "w2", "p1")
    assert not store.sent(items[0].id, "w2", "again")  # (claimed already)
    store.running(items[0].id)
    store.done(items[0].id, ["a.png"])
    store.failed(items[1].id, "broken")
    store.sent(items[2].id, "w1", "p2")
    lost = store.lost(items[2].id, "w1 died")
    store.set_paused(True, second)
    store.set_note(second, "paused: disk full")
    store.set_paused(False, second)
    out = store.cancel(first)
    retried = store.retry(first)
    store.set_paused(True)
    jobs = [
        (j.id, j.name, j.priority, j.workers, j.paused, j.cancelled, j.ended is None, j.note,
         j.queued_by, dict(j.counts), j.state)
        for j in store.jobs()
    ]  # fmt: skip
    rows = [
        (i.job, i.index, i.seed, i.state, i.participant, i.prompt_id, i.attempts, i.error, i.files)
        for i in store.items()
    ]
    waiting = [(i.job, i.index) for i in store.waiting(10)]
    return [lost, [i.id for i in out], retried, store.paused(), jobs, rows, waiting,
            store.waiting_count(), store.waiting_count(second), store.cancelled_jobs(),
            sorted(store.finished_since(0)), store.workflow(first) == nomodel()]  # fmt: skip


def test_the_same_steps_give_the_same_answers_on_both(pg: PgQueueStore, tmp_path: Path) -> None:
    pg.lease_token = "test"  # (claims on the server need the lease: held here by hand)
    pg._write(
        lambda: pg._q(
            "INSERT INTO lease VALUES ('dispatcher', 'test', 'test', now() + interval '1 hour')"
        )
    )
    lite = _story(QueueStore(tmp_path / "queue.db"), tmp_path)
    assert _story(pg, tmp_path) == lite
    assert lite[0] is ItemState.QUEUED and lite[2] == 3  # (a story that did something)


def test_a_queue_from_a_newer_version_on_the_server_is_refused_and_left(
    pg: PgQueueStore, pg_url: str
) -> None:
    pg._write(lambda: pg._set_meta("schema_version", str(SCHEMA_VERSION + 1)))
    with pytest.raises(QueueStoreError, match="newer ComfyFleet") as caught:
        PgQueueStore(pg_url)
    assert "left as it is" in str(caught.value)
    assert pg._meta("schema_version") == str(SCHEMA_VERSION + 1)


def test_a_server_that_does_not_answer_is_said_in_words(pg_server: Any) -> None:
    url = pg_server.url().replace(str(pg_server.port), "1")  # (nothing listens on port 1)
    with pytest.raises(QueueStoreError, match="cannot use the queue's database postgresql://"):
        PgQueueStore(url)


def test_a_claim_skips_an_item_another_holds_and_needs_the_lease(
    pg: PgQueueStore, pg_url: str, tmp_path: Path
) -> None:
    job = add(pg, tmp_path, 2)
    first, second = pg.items(job)
    with pytest.raises(LeaseLost):
        pg.sent(first.id, "w1", "p")  # nobody gave it the lease
    lease = pg.dispatcher_lease()
    assert lease.acquire("the test")
    try:
        with psycopg.connect(pg_url, options="-c search_path=comfyfleet") as other:
            other.execute("SELECT * FROM items WHERE id = %s FOR UPDATE", (first.id,))
            started = time.monotonic()
            assert not pg.sent(first.id, "w1", "p1")  # skipped, not waited for
            assert time.monotonic() - started < 2.0
            assert pg.sent(second.id, "w1", "p2")
        assert pg.sent(first.id, "w1", "p1")  # free again
    finally:
        lease.release()
    with pytest.raises(LeaseLost):
        pg.sent(first.id, "w1", "again")


def test_a_second_lease_is_refused_names_the_holder_and_is_free_once_given_back(
    pg: PgQueueStore, pg_url: str
) -> None:
    other = PgQueueStore(pg_url)
    try:
        mine, theirs = pg.dispatcher_lease(), other.dispatcher_lease()
        assert mine.acquire("the window")
        assert not theirs.acquire("queue run")
        assert theirs.holder() is not None and theirs.holder().startswith("the window on ")
        assert 0 < theirs.free_in() <= LEASE_S
        mine.release()
        assert theirs.holder() is None and theirs.acquire("queue run")
        assert mine.holder() is not None and mine.holder().startswith("queue run on ")
        theirs.release()
    finally:
        other.close()


def test_a_lease_nobody_renews_runs_out_and_another_takes_it(pg: PgQueueStore, pg_url: str) -> None:
    pg._write(
        lambda: pg._q(
            "INSERT INTO lease VALUES ('dispatcher', 'a dead one', 'old', now() + interval '1 s')"
        )
    )
    lease = pg.dispatcher_lease()
    assert not lease.acquire("the next one")
    wait_until(lambda: lease.acquire("the next one"), timeout=10)
    assert lease.held
    with pytest.raises(LeaseLost):  # the dead one's claims are refused by the server
        other = PgQueueStore(pg_url)
        try:
            other.lease_token = "old"
            other.sent(1, "w1", "p")
        finally:
            other.close()
    lease.release()


def test_a_change_by_another_process_reaches_this_one_by_notify(
    pg: PgQueueStore, pg_url: str, tmp_path: Path
) -> None:
    other = PgQueueStore(pg_url)
    try:
        wait_until(lambda: other.data_version() > 0, timeout=10)  # (listening)
        seen = other.data_version()
        job = add(pg, tmp_path, 2)
        wait_until(lambda: other.data_version() != seen, timeout=10)
        assert [j.id for j in other.jobs()] == [job]
        mine = pg.data_version()
        other.cancel(job)
        wait_until(lambda: pg.data_version() != mine, timeout=10)
        settled = other.data_version()
        other.set_note(job, "its own change")  # is not news to itself
        wait_until(lambda: pg.data_version() != mine + 1, timeout=10)
        assert other.data_version() == settled
    finally:
        other.close()


def test_two_desktops_adding_and_cancelling_at_once_lose_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    """Each on its own connections (as two desktops): every job arrives whole, every cancel
    takes, no id is given twice."""
    added: dict[str, list[int]] = {"ana": [], "ben": []}
    errors: list[BaseException] = []

    def desktop(who: str, victim: str) -> None:
        store = PgQueueStore(pg_url)
        try:
            for n in range(15):
                spec = JobSpec(f"{who}-{n}", nomodel(), 5)
                added[who].append(store.add_job(spec, expand(spec), tmp_path, f"{who}@desk"))
                if added[victim]:
                    store.cancel(added[victim][-1])
        except BaseException as exc:  # (said after the threads end)
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=desktop, args=p) for p in (("ana", "ben"), ("ben", "ana"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    store = PgQueueStore(pg_url)
    try:
        jobs = {j.id: j for j in store.jobs()}
        assert sorted(jobs) == sorted(added["ana"] + added["ben"]) and len(jobs) == 30
        for job in jobs.values():
            assert job.total == 5 and job.queued_by == f"{job.name.split('-')[0]}@desk"
            assert job.counts in ({ItemState.QUEUED: 5}, {ItemState.CANCELLED: 5})
            assert job.cancelled == (job.counts == {ItemState.CANCELLED: 5})
        assert sum(j.cancelled for j in jobs.values()) >= 2
    finally:
        store.close()


def test_queue_migrate_moves_every_job_as_it_is_and_the_desktop_follows(
    pg_url: str, tmp_path: Path
) -> None:
    config = fleet_file(tmp_path, SimlessMaster())
    paths = resolve_paths(config)
    local = QueueStore(QueuePaths.under(paths.data_dir).db)
    done = add(local, tmp_path, 3, name="done one")
    for n, item in enumerate(local.items(done)):
        assert local.sent(item.id, "w1", f"p{n}")
        local.done(item.id, [f"out/{n}.png"])
    half = add(local, tmp_path, 4, name="half", priority=2, workers=("w1",))
    first, second, *_ = local.items(half)
    local.sent(first.id, "w1", "out-there")  # (still out: the next dispatcher follows it)
    local.failed(second.id, "broken")
    paused = add(local, tmp_path, 2, name="paused")
    local.set_paused(True, paused)
    gone = add(local, tmp_path, 2, name="cancelled")
    local.cancel(gone)
    client = local.client_id()
    before = cli_done(config, "queue", "list", "--json")
    local.close()
    code, out, err = cli_done(config, "queue", "migrate", "--to", pg_url)
    assert code == 0, err
    assert f"moved 4 job(s) and 11 item(s) to {pg_url}" in out
    after = cli_done(config, "queue", "list", "--json")  # (the settings name the server now)
    assert after[0] == 0, after[2]
    assert _as_listed(after[1]) == _as_listed(before[1])
    server = PgQueueStore(pg_url)
    try:
        moved = {j.name: j for j in server.jobs()}
        out_there = next(i for i in server.items(moved["half"].id) if i.index == 0)
        assert (out_there.state, out_there.prompt_id) == (ItemState.SENT, "out-there")
        assert server.client_id() == client
        assert [i.files for i in server.items(moved["done one"].id)][2] == ("out/2.png",)
    finally:
        server.close()
    code, out, err = cli_done(config, "--queue-url", "", "queue", "list")  # the local file
    assert code == 1 and "were moved to postgresql://" in err and "kept" in err
    code, out, err = cli_done(config, "queue", "migrate", "--to", pg_url)  # not twice
    assert code == 1 and "were moved to" in err


def _as_listed(text: str) -> dict[str, Any]:
    """`queue list --json` without the numbers a move changes (ids) or the clock does (ETA)."""
    listing: dict[str, Any] = json.loads(text)
    for job in listing["jobs"]:
        del job["id"], job["eta_s"]
    return listing


def test_a_password_in_the_queue_url_is_kept_off_the_command_line_and_the_settings(
    pg_server: Any, tmp_path: Path
) -> None:
    config = fleet_file(tmp_path, SimlessMaster())
    with_password = pg_server.url().replace("comfyfleet@", "comfyfleet:s3cret@")
    code, out, err = cli_done(config, "--queue-url", with_password, "queue", "list")
    assert code == 2 and "~/.pgpass" in err and "s3cret" not in out + err
    code, out, err = cli_done(config, "queue", "migrate", "--to", with_password)
    assert code == 2 and "s3cret" not in out + err
    code, out, err = cli_done(config, "queue", "list", env={QUEUE_URL_ENV: with_password})
    assert code == 0, err  # the environment is a place for it (trust: no password asked)
