"""0.38's asset system as a client sees it (recordings/comfyui-0.38/ws_events.md): asset ids on
the files a run made, the `assets.seed.*` scans broadcast to every socket, and the database
that one process at a time may hold (launch_errors.json, startup_failures)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import IO, Any

from app.sim.events import EventHub

GC_S = 10.0  # the output-folder scan runs at the worker's GC step, about 10 s after a prompt
ASSET_FOLDERS = ("input", "output", "temp")
IN_USE = (
    "ASSETS_STARTUP_FAILED: in_use",
    "Another ComfyUI is already using this database: '{path}'.",
    "Close the other ComfyUI and start this one again.",
)
OWN_DATABASE = "Or give this ComfyUI its own database: --database-url sqlite:///path/to/another.db"
UNSUPPORTED_URL = (
    "ASSETS_STARTUP_FAILED: unsupported_url",
    "--database-url must start with sqlite:///, like sqlite:///path/to/comfyui.db, or be left "
    "out to use the default database.",
)
WITHOUT_ASSETS = "Or start ComfyUI without the assets system: --disable-assets"


def with_asset_ids(ui: dict[str, Any]) -> dict[str, Any]:
    """An `executed` output as 0.38 sends it: each file in input/output/temp gains `id`, an
    image `preview_id` too."""

    def registered(media: str, entry: Any) -> Any:
        if not isinstance(entry, dict) or entry.get("type") not in ASSET_FOLDERS:
            return entry
        asset = str(uuid.uuid4())
        return {**entry, "id": asset, **({"preview_id": asset} if media == "images" else {})}

    return {
        media: [registered(media, e) for e in entries] if isinstance(entries, list) else entries
        for media, entries in ui.items()
    }


class Seeder:
    """The scans' events: at the first /object_info (models, input, output) and after every
    prompt (output). Each scan here finds its files at once, so it is never paused."""

    def __init__(self, events: EventHub, folders: dict[str, Path], time_scale: float) -> None:
        self._events = events
        self._folders = folders
        self._delay = GC_S * time_scale
        self._known: set[Path] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.first_scan_done = False

    def after_prompt(self) -> None:
        asyncio.get_running_loop().call_later(self._delay, self._spawn, ("output",))

    def on_object_info(self) -> None:
        if not self.first_scan_done:
            self.first_scan_done = True
            self._spawn(("models", "input", "output"))

    def _spawn(self, roots: tuple[str, ...]) -> None:
        task = asyncio.create_task(self.scan(list(roots)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def scan(self, roots: list[str]) -> None:
        began = time.monotonic()
        files = {p for r in roots if (f := self._folders.get(r)) for p in _files(f) if p.is_file()}
        created = len(files - self._known)
        self._known |= files
        total, skipped = len(files), len(files) - created
        send = self._events.send
        await send("assets.seed.started", {"roots": roots, "total": total, "phase": "fast"})
        await send(
            "assets.seed.progress",
            {"phase": "fast", "scanned": total, "total": total, "created": created},
        )
        await send(
            "assets.seed.fast_complete",
            {"roots": roots, "created": created, "skipped": skipped, "total": total},
        )
        await send(
            "assets.seed.completed",
            {
                "phase": "fast",
                "total": total,
                "created": created,
                "enriched": 0,
                "skipped": skipped,
                "elapsed": round(time.monotonic() - began, 3),
            },
        )

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()


def _files(folder: Path) -> list[Path]:
    with contextlib.suppress(OSError):
        return list(folder.rglob("*"))
    return []


def database_path(database_url: str | None, user_dir: Path) -> Path | None:
    """The SQLite file 0.38 opens: --database-url's, else comfyui.db in the user directory;
    None for a URL it refuses."""
    if database_url is None:
        return user_dir / "comfyui.db"
    prefix = "sqlite:///"
    return Path(database_url[len(prefix) :]) if database_url.startswith(prefix) else None


def startup_failure(database_url: str | None, user_dir: Path) -> tuple[list[str], IO[str] | None]:
    """(lines, None) when the database cannot be had; ([], its held lock) when it can: the
    lock is `<db>.lock`, held by this process until it exits."""
    path = database_path(database_url, user_dir)
    if path is None:
        return [*UNSUPPORTED_URL, WITHOUT_ASSETS], None
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 (held until exit)
    if not _try_lock(lock):
        lock.close()
        own = [] if database_url else [OWN_DATABASE]
        return [IN_USE[0], IN_USE[1].format(path=path), IN_USE[2], *own, WITHOUT_ASSETS], None
    path.touch()
    return [], lock


def _try_lock(handle: IO[str]) -> bool:
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
    except OSError:
        return False
    return True
