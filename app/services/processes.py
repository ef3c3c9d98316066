"""Portable process plumbing: spawn in a new group, find who holds a port, stop a whole tree."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from app.core.errors import ComfyFleetError

WINDOWS = sys.platform == "win32"


class PortBusy(ComfyFleetError):
    def __init__(self, port: int, holder: str, next_free: int) -> None:
        super().__init__(f"Port {port} is used by {holder}. The next free port is {next_free}.")
        self.port = port
        self.holder = holder
        self.next_free = next_free


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        if not WINDOWS:  # as servers do: connections in TIME_WAIT do not block a new listener
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host if host not in ("0.0.0.0", "::") else host, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str:
    """'process 4312 (python main.py --port 8189 …)', as far as this user may see."""
    with contextlib.suppress(psutil.AccessDenied, OSError):
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    break
                try:
                    process = psutil.Process(conn.pid)
                    command = " ".join(process.cmdline())[:120]
                    return f"process {conn.pid} ({process.name()}: {command})"
                except psutil.Error:
                    return f"process {conn.pid}"
    return "another program (its process is not visible to this user)"


def os_free_port(host: str = "127.0.0.1") -> int:
    """A port the system has just handed out as free (two callers at once get two ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` itself listens on `port` (True where the system will not say)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="inet")
    except psutil.AccessDenied:
        return True
    except psutil.Error:
        return False
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in connections
    )


def free_port_near(start: int, host: str = "127.0.0.1") -> int:
    """A free port at or after `start` (cloudflared's metrics: never its colliding default)."""
    port = start
    while not port_free(port, host):
        port += 1
    return port


def check_port(port: int, host: str = "127.0.0.1", taken: set[int] | None = None) -> None:
    if port_free(port, host):
        return
    candidate = port + 1
    while candidate in (taken or set()) or not port_free(candidate, host):
        candidate += 1
    raise PortBusy(port, port_holder(port), candidate)


class CannotRun(ComfyFleetError):
    """A program that the system refuses to start; the message says why, in words."""


def spawn(
    argv: list[str], cwd: str, env: dict[str, str], log_file: Path
) -> subprocess.Popen[bytes]:
    """Start without a shell, in its own process group, output appended to `log_file` (a file,
    not a pipe, so the instance outlives a crash of ComfyFleet without a broken pipe).
    CannotRun when the program cannot be started at all."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    group = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if WINDOWS else 0
    with log_file.open("ab") as output:
        try:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                creationflags=group,
                start_new_session=not WINDOWS,
            )
        except OSError as exc:
            raise CannotRun(cannot_run(argv[0], exc, cwd)) from None


def cannot_run(program: str, exc: OSError, cwd: str) -> str:
    """Why the system would not start `program`, in words."""
    if exc.errno == errno.ENOEXEC:
        why = "it is not a program for this system (damaged, or built for another one)"
    elif exc.errno == errno.ENOENT and Path(program).is_file():
        why = "its first line (#!) names an interpreter that does not exist"
    elif exc.errno == errno.ENOENT and not Path(cwd).is_dir():
        why = f"its folder {cwd} does not exist"
    elif exc.errno == errno.ENOENT:
        why = "there is no such file"
    elif exc.errno == errno.EACCES:
        why = "it is not executable (or its folder cannot be entered)"
    else:
        why = exc.strerror or str(exc)
    return f"{program} cannot run: {why}"


@dataclass(frozen=True)
class ProcessId:
    """A PID and its start time: a PID alone may have been recycled by another program."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return None

    def alive(self) -> psutil.Process | None:
        """The process, only if it is still the one we started (same PID and start time)."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.create_time) > 0.01:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except psutil.Error:
            return None


def interrupt(process: psutil.Process) -> None:
    """Ask politely: SIGTERM to the group on POSIX, CTRL_BREAK on Windows."""
    with contextlib.suppress(psutil.Error, OSError):
        if WINDOWS:
            process.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            os.killpg(os.getpgid(process.pid), signal.SIGTERM)


def kill_tree(process: psutil.Process) -> None:
    try:
        children = process.children(recursive=True)
    except psutil.Error:
        children = []
    for victim in [*children, process]:
        with contextlib.suppress(psutil.Error):
            victim.kill()


def wait_gone(process: psutil.Process, timeout_s: float) -> bool:
    """Wait for a process that may not be our child: gone, or a zombie its parent has not
    reaped yet, both count as stopped."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
