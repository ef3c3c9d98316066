"""A real PostgreSQL server for tests: initdb + postgres in a temporary folder, on a loopback
port, trusting local connections. As root it runs as `nobody` (postgres refuses root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

USER = "comfyfleet"
NO_SERVER = (
    "PostgreSQL's server programs (initdb, postgres) are not installed, so the PostgreSQL"
    " queue tests cannot run here: install them (Debian: apt install postgresql)"
)


def server_programs() -> Path | None:
    """The folder holding initdb and postgres: PATH first, then where distributions put them."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    for pattern in (
        "/usr/lib/postgresql/*/bin",
        "/usr/pgsql-*/bin",
        "/opt/homebrew/opt/postgresql*/bin",
        "/usr/local/opt/postgresql*/bin",
    ):
        for folder in sorted(glob.glob(pattern), reverse=True):
            if (Path(folder) / "initdb").exists() and (Path(folder) / "postgres").exists():
                return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgServer:
    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self.folder = Path(tempfile.mkdtemp(prefix="comfyfleet-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self._as = {"user": 65534, "group": 65534, "extra_groups": []}  # nobody
            os.chown(self.folder, 65534, 65534)
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync",
            "--locale=C", "-E", "UTF8",
        )  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.programs / program), *args],
            check=True,
            capture_output=True,
            cwd=self.folder,
            **self._as,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 (the server writes it)
        self.process = subprocess.Popen(
            [
                str(self.programs / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
                "-c", "fsync=off", "-c", "max_connections=200",
            ],
            stdout=log, stderr=log, cwd=self.folder, **self._as,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
            time.sleep(0.05)  # (polling for the server's first answer)

    def stop(self) -> None:
        """A fast shutdown (SIGINT): connections are closed, as for a restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "server.log").read_text(errors="replace")[-2000:]
        return ""

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
