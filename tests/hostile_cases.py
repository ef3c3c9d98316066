"""The bad-input catalogue: hostile or broken input, each case run through the real `comfy-fleet`
in a process of its own, in a folder of its own. A case is clear when the command ends with the
exit code it names (2: bad input, 1: a failure, 0: done safely), says its words in one error
line (details indented below it), and prints no traceback and no terminal escapes; nothing is
lost when every file the case began with is still there byte for byte (under another name
counts: a config that cannot be read is moved aside). Each process may take 2 GB at most.
tests/integration/test_hostile_input.py runs every category; tests/benchmarks/bench_bad_input.py
runs them all and prints the figure."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: no cap
    resource = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
UI = REPO / "tests" / "data" / "recordings" / "ui_workflows"
API = REPO / "tests" / "data" / "recordings" / "workflows" / "workflow_nomodel.json"
GUARD_SITE = Path(__file__).resolve().parent / "netguard_site"
MEMORY_CAP = 2 * 2**30  # address space of each case's process
CLOSED_PORT = "9"  # discard: nothing listens on loopback there, a refusal comes at once
Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    argv: tuple[str, ...]  # after `comfy-fleet --config FOLDER/fleet.json`, run in FOLDER
    code: int
    said: str  # words the answer must hold
    setup: Setup = lambda folder: None
    stdin: str = ""


@dataclass(frozen=True)
class Outcome:
    case: Case
    code: int
    out: str
    err: str
    lost: tuple[str, ...] = field(default_factory=tuple)

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.out + self.err

    @property
    def clear(self) -> bool:
        errors = [line for line in self.err.splitlines() if "error:" in line]
        return (
            self.code == self.case.code
            and self.case.said in self.out + self.err
            and not self.traceback
            and len(errors) == (0 if self.case.code == 0 else 1)
            and "\x1b" not in self.out + self.err
        )

    def why(self) -> str:
        return f"{self.case.name}: exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_case(case: Case, folder: Path, timeout_s: float = 60) -> Outcome:
    folder.mkdir(parents=True)
    config = {"master": {"host": "127.0.0.1", "port": int(CLOSED_PORT)}}
    (folder / "fleet.json").write_text(json.dumps(config))
    case.setup(folder)
    before = _snapshot(folder)
    try:
        done = comfy_fleet(folder, *case.argv, stdin=case.stdin, timeout_s=timeout_s)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired:
        code, out, err = -1, "", f"(still running after {timeout_s:.0f} s: stopped)"
    kept = set(_snapshot(folder).values())
    lost = tuple(name for name, data in before.items() if data not in kept)
    return Outcome(case, code, out, err, lost)


def _memory_cap() -> None:
    """In the child: what a hostile file could make it allocate (never 2 GB) fails there."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def comfy_fleet(
    folder: Path, *argv: str, stdin: str = "", timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real entry point on the folder's config, its files under folder/home."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(GUARD_SITE), str(REPO)]),
        "QT_QPA_PLATFORM": "offscreen",
    }
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(folder / "home" / name.lower())
    return subprocess.run(
        [sys.executable, "-m", "app", "--config", str(folder / "fleet.json"), *argv],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout_s,
        input=stdin,
        env=env,
        cwd=folder,
        preexec_fn=_memory_cap if resource is not None else None,
    )


def run_all(cases: list[Case], root: Path, workers: int = 2) -> list[Outcome]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda n: run_case(cases[n], root / f"case-{n}"), range(len(cases))))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# what the cases write


def _write(name: str, data: bytes | str | Callable[[], bytes]) -> Setup:
    """A file of `data` (made when the case runs, when it is a function)."""

    def setup(folder: Path) -> None:
        made = data() if callable(data) else data
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(made.encode() if isinstance(made, str) else made)

    return setup


def _both(*setups: Setup) -> Setup:
    def setup(folder: Path) -> None:
        for one in setups:
            one(folder)

    return setup


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png(*chunks: bytes) -> bytes:
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(chunks) + _chunk(b"IEND", b"")


@functools.cache
def zlib_bomb(size: int) -> bytes:
    """`size` bytes of spaces, deflated (1 GB is about 1 MB)."""
    squeeze = zlib.compressobj(9)
    block = b" " * 2**20
    return b"".join(squeeze.compress(block) for _ in range(size // len(block))) + squeeze.flush()


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def mp4_key_bomb() -> bytes:
    """moov/udta/meta whose `keys` box claims four billion keys, each of size 0."""
    keys = _box(b"keys", b"\x00" * 4 + struct.pack(">I", 0xFFFFFFFF) + b"\x00" * 64)
    meta = _box(b"meta", _box(b"hdlr", b"\x00" * 24) + keys + _box(b"ilst", b""))
    return _box(b"ftyp", b"isom\x00\x00\x02\x00") + _box(b"moov", _box(b"udta", meta))


def webp_tag_bomb(tags: int = 65_535, text: int = 2**20) -> bytes:
    """A WebP whose EXIF has `tags` text tags, each pointing one byte further into one `text`
    bytes long region: every tag a different key of about a megabyte (tens of GB in all)."""
    region = b"a" * text + b":workflow"
    base = 8 + 2 + 12 * tags + 4
    entries = b"".join(
        struct.pack("<HHII", 0x010E, 2, len(region) - n, base + n) for n in range(tags)
    )
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", tags) + entries + b"\0" * 4
    exif = b"Exif\x00\x00" + tiff + region
    chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _ui(name: str, change: Callable[[dict], None]) -> Setup:
    def setup(folder: Path) -> None:
        data = json.loads((UI / name / "ui.json").read_text(encoding="utf-8"))
        change(data)
        (folder / "ui.json").write_text(json.dumps(data))
        shutil.copy(UI / "object_info.json", folder / "object_info.json")

    return setup


def _self_containing(data: dict) -> None:
    definition = data["definitions"]["subgraphs"][0]
    definition["nodes"].append({"id": 99, "type": definition["id"], "mode": 0})


def _each_input(change: Callable[[dict], None]) -> Callable[[dict], None]:
    def apply(data: dict) -> None:
        for node in data["nodes"]:
            for slot in node.get("inputs") or []:
                if slot.get("link") is not None:
                    change(slot)

    return apply


def _queue_db(folder: Path) -> Path:
    path = folder / "home" / "xdg_data_home" / "comfy-fleet" / "queue.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _db(make: Callable[[Path], None]) -> Setup:
    """A queue.db put where the app keeps it (the snapshot shows it untouched)."""
    return lambda folder: make(_queue_db(folder))


def _with_job(folder: Path) -> None:
    """A queue holding one job of three items, queued by the real CLI."""
    _api(folder)
    added = comfy_fleet(folder, "queue", "add", "api.json", "--count", "3")
    assert added.returncode == 0, added.stderr


def _newer_db(folder: Path) -> None:
    _with_job(folder)
    with sqlite3.connect(_queue_db(folder)) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()


def _truncated_db(folder: Path) -> None:
    _with_job(folder)
    path = _queue_db(folder)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _unrunnable(content: bytes) -> Setup:
    def setup(folder: Path) -> None:
        program = folder / "cloudflared"
        program.write_bytes(content)
        program.chmod(0o755)
        config = json.loads((folder / "fleet.json").read_text())
        config["tunnel"] = {"cloudflared_path": str(program), "confirm_exposure": False}
        (folder / "fleet.json").write_text(json.dumps(config))

    return setup


def _api(folder: Path) -> None:
    shutil.copy(API, folder / "api.json")


def _cases() -> Iterator[Case]:
    queue = "queue"
    add = ("queue", "add", "api.json")
    yield Case(queue, "count 0", (*add, "--count", "0"), 2, "--count 0: give 1 to", _api)
    yield Case(queue, "count ten million", (*add, "--count", "10000000"), 2, "--count", _api)
    yield Case(queue, "count not a number", (*add, "--count", "x"), 2, "--count", _api)
    yield Case(queue, "priority huge", (*add, "--priority", "10**9"), 2, "--priority", _api)
    yield Case(
        queue, "priority out of range", (*add, "--priority", "2000000"), 2, "--priority", _api
    )
    yield Case(queue, "seed negative", (*add, "--seed", "-1"), 2, "--seed -1", _api)
    yield Case(queue, "seed past 64 bits", (*add, "--seed", str(2**64)), 2, "--seed", _api)
    yield Case(queue, "vary without =", (*add, "--vary", "3.steps"), 2, "--vary", _api)
    yield Case(queue, "vary a missing node", (*add, "--vary", "999.steps=1,2"), 2, "no node", _api)
    yield Case(queue, "out is a file", (*add, "--out", "api.json"), 2, "--out", _api)
    yield Case(queue, "name empty", (*add, "--name", " "), 2, "--name", _api)
    yield Case(queue, "name with ANSI", (*add, "--name", "\x1b[31mred\x1b[0m"), 2, "--name", _api)
    yield Case(queue, "show a job that is not", ("queue", "show", "42"), 2, "no job 42")
    page = ("queue", "show", "1", "--page")
    yield Case(queue, "show page 0", (*page, "0"), 2, "--page 0", _with_job)
    yield Case(queue, "show page past the end", (*page, "99"), 2, "--page 99", _with_job)

    store = "queue store"
    listing = ("queue", "list")
    yield Case(store, "a folder", listing, 1, "is a folder", _db(lambda p: p.mkdir()))
    garbage = _db(lambda p: p.write_bytes(b"not a database at all\n" * 100))
    yield Case(store, "not SQLite", listing, 1, "is damaged", garbage)
    yield Case(store, "truncated", listing, 1, "is damaged", _truncated_db)
    yield Case(store, "newer schema", listing, 1, "written by a newer ComfyFleet", _newer_db)
    yield Case(store, "adding to a damaged one", (*add,), 1, "is damaged", _both(_api, garbage))

    files = "workflow files"
    convert = ("workflow", "convert")
    deep = "[" * 200_000 + "]" * 200_000
    yield Case(
        files,
        "JSON nested 200,000 deep",
        (*convert, "deep.json"),
        1,
        "nested",
        _write("deep.json", deep),
    )
    big = _write("big.json", lambda: b'{"1": {"inputs": {"t": "' + b"a" * 40 * 2**20 + b'"}}}')
    yield Case(files, "a 40 MB workflow", (*convert, "big.json"), 1, "no workflow is that big", big)
    for kind, head in ((b"zTXt", b"prompt\x00\x00"), (b"iTXt", b"workflow\x00\x01\x00\x00\x00")):
        bomb = _write("bomb.png", lambda k=kind, h=head: png(_chunk(k, h + zlib_bomb(2**30))))
        name = f"PNG {kind.decode()} bomb (1 GB)"
        yield Case(files, name, (*convert, "bomb.png"), 1, "inflate past", bomb)
    broken = png(_chunk(b"zTXt", b"prompt\x00\x00not zlib at all"))
    yield Case(
        files,
        "PNG zTXt not zlib",
        (*convert, "b.png"),
        1,
        "cannot read its metadata",
        _write("b.png", broken),
    )
    truncated = png(_chunk(b"tEXt", b"prompt\x00{}"))[:20]
    yield Case(files, "PNG cut short", (*convert, "t.png"), 1, "t.png", _write("t.png", truncated))
    yield Case(
        files,
        "WebP with 65,535 megabyte tags",
        (*convert, "w.webp"),
        1,
        "add up past 32 MB",
        _write("w.webp", webp_tag_bomb),
    )
    yield Case(
        files,
        "MP4 claiming 4 billion keys",
        (*convert, "v.mp4"),
        1,
        "carries no ComfyUI workflow",
        _write("v.mp4", mp4_key_bomb()),
    )
    yield Case(
        files,
        "not UTF-8",
        (*convert, "l1.json"),
        1,
        "not UTF-8",
        _write("l1.json", b'{"a": "caf\xe9"}'),
    )
    yield Case(
        files,
        "a list",
        (*convert, "list.json"),
        1,
        "expected a JSON object",
        _write("list.json", "[1, 2]"),
    )
    yield Case(files, "a folder", (*convert, "."), 1, "is a folder")
    yield Case(
        files,
        "nodes without class_type",
        (*convert, "n.json"),
        1,
        "has no class_type",
        _write("n.json", '{"1": {"inputs": {}}}'),
    )

    ui = "UI-format workflows"
    with_info = (*convert, "ui.json", "--object-info", "object_info.json")
    yield Case(
        ui,
        "a subgraph containing itself",
        with_info,
        1,
        "this subgraph contains itself",
        _ui("c12_subgraph_basic", _self_containing),
    )
    yield Case(
        ui,
        "links null",
        with_info,
        1,
        "link entry 1 (null) is not a link",
        _ui("t01_default_txt2img", lambda d: d.update(links=[None] * len(d["links"]))),
    )
    yield Case(
        ui,
        "links cut short",
        with_info,
        1,
        "is not a link",
        _ui("t01_default_txt2img", lambda d: d.update(links=[link[:2] for link in d["links"]])),
    )
    yield Case(
        ui,
        "a link id that is a list",
        with_info,
        1,
        "not a link number",
        _ui("t01_default_txt2img", _each_input(lambda s: s.update(link=[s["link"]]))),
    )
    yield Case(
        ui,
        "a link id of 1.5",
        with_info,
        1,
        "has link 1.5, not a link number",
        _ui("t01_default_txt2img", _each_input(lambda s: s.update(link=1.5))),
    )
    yield Case(
        ui,
        "a list for a node",
        with_info,
        1,
        "node entry 1 is a list, not an object",
        _ui("t01_default_txt2img", lambda d: d["nodes"].insert(0, [1, 2])),
    )
    yield Case(
        ui,
        "an object for inputs",
        with_info,
        1,
        "its inputs are not a list of objects",
        _ui("t01_default_txt2img", lambda d: d["nodes"][0].update(inputs={"a": 1})),
    )
    yield Case(
        ui,
        "a number for a type",
        with_info,
        1,
        "its type is the number 5",
        _ui("t01_default_txt2img", lambda d: d["nodes"][0].update(type=5)),
    )
    yield Case(
        ui,
        "a list for definitions",
        with_info,
        1,
        "'definitions' is not an object",
        _ui("c12_subgraph_basic", lambda d: d.update(definitions=[1])),
    )
    yield Case(
        ui,
        "whole floats for ids (JavaScript's 4.0 is 4)",
        with_info,
        0,
        '"class_type": "KSampler"',
        _ui(
            "t01_default_txt2img",
            lambda d: d.update(
                links=[[float(v) if isinstance(v, int) else v for v in link] for link in d["links"]]
            ),
        ),
    )

    config = "config"
    listed = ("worker", "list")  # a config that cannot be used is moved aside and said
    yield Case(config, "not JSON", listed, 0, "not valid JSON", _write("fleet.json", "{oops"))
    yield Case(config, "nested 200,000 deep", listed, 0, "nested", _write("fleet.json", deep))
    yield Case(config, "a list", listed, 0, "expected a JSON object", _write("fleet.json", "[]"))
    yield Case(
        config,
        "distributed config deep",
        ("config", "import-distributed", "gpu.json"),
        2,
        "nested",
        _write("gpu.json", deep),
    )

    cloud = "cloud (checked before Runpod is asked)"
    yield Case(
        cloud,
        "create --count 0",
        ("cloud", "create", "--count", "0"),
        2,
        "--count 0: a pod has 1 GPU or more",
    )
    yield Case(cloud, "create --count -1", ("cloud", "create", "--count", "-1"), 2, "--count -1")
    yield Case(cloud, "create --image ''", ("cloud", "create", "--image", ""), 2, "--image ''")
    yield Case(
        cloud, "create --name with a newline", ("cloud", "create", "--name", "a\nb"), 2, "--name"
    )
    yield Case(cloud, "logs -n 0", ("cloud", "logs", "pod", "-n", "0"), 2, "-n 0: give 1 to 5000")
    yield Case(cloud, "logs -n -5", ("cloud", "logs", "pod", "-n", "-5"), 2, "-n -5")
    yield Case(cloud, "logs -n 6000", ("cloud", "logs", "pod", "-n", "6000"), 2, "-n 6000")
    yield Case(
        cloud,
        "login with a control character",
        ("cloud", "login", "runpod"),
        2,
        "characters no Runpod API key has",
        stdin="rp_\x1b[31mkey\n",
    )
    yield Case(
        cloud,
        "login with a space",
        ("cloud", "login", "runpod"),
        2,
        "characters no Runpod API key has",
        stdin="rp_a key\n",
    )
    for value in ("nan", "inf", "-1"):
        yield Case(
            cloud,
            f"guard budget {value}",
            ("cloud", "guard", "--daily-budget", value),
            2,
            "give a number, 0 or more",
        )

    programs = "programs that cannot run"
    yield Case(
        programs,
        "cloudflared of garbage bytes",
        ("tunnel", "start", "--yes"),
        1,
        "it is not a program for this system",
        _unrunnable(b"\x7fELF\x02garbage"),
    )
    yield Case(
        programs,
        "cloudflared with a bad #!",
        ("tunnel", "start", "--yes"),
        1,
        "names an interpreter that does not exist",
        _unrunnable(b"#!/nonexistent/interpreter\n"),
    )


CASES = list(_cases())
