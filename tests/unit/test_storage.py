from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.core.config import FleetConfig, WorkerConfig, WorkerKind
from app.core.errors import ConfigError
from app.services.storage import ConfigStore, atomic_write_text, dump_config

CONFIG = FleetConfig(workers=(WorkerConfig("gpu1", WorkerKind.LOCAL, gpu="1"),))


def test_missing_file_gives_defaults_without_a_problem(tmp_path: Path) -> None:
    result = ConfigStore(tmp_path / "fleet.json").load()
    assert result.config == FleetConfig()
    assert result.problem is None


def test_save_then_load(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "sub" / "fleet.json")
    store.save(CONFIG)
    assert store.load().config == CONFIG
    assert json.loads(store.path.read_text())["schema_version"] == 1
    assert [p.name for p in store.path.parent.iterdir()] == ["fleet.json"]


def test_save_refuses_an_invalid_config(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "fleet.json")
    store.save(CONFIG)
    bad = FleetConfig(workers=(WorkerConfig("a", WorkerKind.LOCAL, port=8188),))
    with pytest.raises(ConfigError):
        store.save(bad)
    assert store.load().config == CONFIG


@pytest.mark.parametrize(
    "content",
    [
        b"{ not json",
        dump_config(CONFIG).encode()[:40],  # truncated
        b'{"workers": [{"name": "a", "kind": "local", "port": 0}]}',
        b'{"schema_version": 99}',
        b"\xff\xfe binary",
        b"[]",
    ],
    ids=["corrupt", "truncated", "invalid", "future-schema", "not-utf8", "not-an-object"],
)
def test_unusable_file_is_moved_aside_and_defaults_used(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fleet.json"
    path.write_bytes(content)
    result = ConfigStore(path).load()
    assert result.config == FleetConfig()
    assert result.backup is not None and result.backup.read_bytes() == content
    assert result.backup.name.startswith("fleet.json.invalid-")
    assert result.problem is not None and str(result.backup) in result.problem
    assert not path.exists()  # never silently overwritten: the next save writes a new file


def test_two_bad_files_in_one_second_keep_both_backups(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_bytes(b"first")
    first = ConfigStore(path).load().backup
    path.write_bytes(b"second")
    second = ConfigStore(path).load().backup
    assert first != second
    assert first is not None and first.read_bytes() == b"first"
    assert second is not None and second.read_bytes() == b"second"


def test_failed_write_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fleet.json"
    atomic_write_text(path, "old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.json"]


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from app.core.config import FleetConfig, WorkerConfig, WorkerKind
    from app.services.storage import ConfigStore
    store = ConfigStore(Path(sys.argv[1]))
    workers = tuple(WorkerConfig(f"w{i}", WorkerKind.REMOTE, host=f"box{i}") for i in range(200))
    store.save(FleetConfig(workers=workers[:1]))
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        store.save(FleetConfig(workers=workers[: 1 + n % 200]))
    """
)


def test_killed_during_writes_never_leaves_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    for _ in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        result = ConfigStore(path).load()
        assert result.problem is None, result.problem
        assert 1 <= len(result.config.workers) <= 200
