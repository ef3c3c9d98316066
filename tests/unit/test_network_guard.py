"""The guard that keeps every test on this machine really fails a test that leaves it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

THROWAWAY = """
import socket, subprocess, sys

def test_connects_to_a_lan_address():
    sock = socket.socket()
    sock.settimeout(0.2)
    try:
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: refused by the guard before any packet
    except OSError:
        pass  # code that takes the refusal for "offline" must not hide it

def test_resolves_an_outside_name():
    try:
        socket.getaddrinfo("comfyfleet.example.com", 443)
    except OSError:
        pass

def test_a_child_python_connects_out():
    code = (
        "import socket\\ntry:\\n socket.create_connection(('192.0.2.1', 80), 0.2)\\n"
        "except OSError:\\n pass"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

def test_the_monitor_threads_loop_connects_out():
    import asyncio
    from app.services.monitor_thread import new_loop

    loop = new_loop()
    try:
        loop.run_until_complete(loop.create_connection(asyncio.Protocol, "192.0.2.1", 80))
    except OSError:
        pass
    finally:
        loop.close()

def test_loopback_is_fine():
    sock = socket.socket()
    try:
        sock.connect(("127.0.0.5", 9))
    except OSError:
        pass
"""


@pytest.mark.timeout(60)
def test_a_throwaway_test_that_leaves_the_machine_fails(tmp_path: Path) -> None:
    (tmp_path / "test_throwaway.py").write_text(THROWAWAY)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-q",
            str(tmp_path / "test_throwaway.py"),
            "--rootdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout
    assert "5 passed, 4 errors" in done.stdout, done.stdout
    assert "connect to ('192.0.2.1', 80)" in done.stdout
    assert "resolve 'comfyfleet.example.com'" in done.stdout
    assert (
        "ERROR" in done.stdout
        and "test_loopback_is_fine" not in done.stdout.split("short test summary")[1]
    )
