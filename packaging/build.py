"""Build the one-folder bundle with PyInstaller, and smoke-test the built binary.

    python packaging/build.py            build into build/dist/comfy-fleet/
    python packaging/build.py --smoke    build, then run the binary: --version, and
                                         status --json against a simulated worker
    python packaging/build.py --smoke-only   test an existing build

A broken bundle exits non-zero, so CI fails on it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import __version__  # noqa: E402
from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind  # noqa: E402
from app.services.storage import ConfigStore  # noqa: E402
from app.sim.fleet import create_sim_install, free_port, start_sim  # noqa: E402

DIST = ROOT / "build" / "dist"
BINARY = DIST / "comfy-fleet" / ("comfy-fleet.exe" if sys.platform == "win32" else "comfy-fleet")


def build() -> None:
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(DIST),
            "--workpath",
            str(ROOT / "build" / "pyinstaller"),
            str(ROOT / "packaging" / "comfy-fleet.spec"),
        ],
        check=True,
    )
    files = (f for f in BINARY.parent.rglob("*") if f.is_file() and not f.is_symlink())
    size = sum(f.stat().st_size for f in files)
    print(f"built {BINARY} in {time.monotonic() - started:.0f} s ({size / 1024**2:.0f} MiB)")


def run_binary(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BINARY), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def smoke() -> int:
    version = run_binary("--version")
    expected = f"comfy-fleet {__version__}"
    if version.returncode != 0 or version.stdout.strip() != expected:
        print(f"FAIL --version: {version.returncode} {version.stdout!r} {version.stderr!r}")
        return 1
    print(f"ok   --version: {version.stdout.strip()}")
    with tempfile.TemporaryDirectory(prefix="bundle-smoke-") as folder:
        worker = start_sim(Path(folder) / "worker", args=["--sim-name", "smoke"])
        try:
            config = Path(folder) / "fleet.json"
            ConfigStore(config).save(
                FleetConfig(
                    master=MasterConfig(port=free_port()),  # nobody there: offline
                    workers=(WorkerConfig("sim", WorkerKind.REMOTE, port=worker.port),),
                )
            )
            status = run_binary("--config", str(config), "status", "--json")
        finally:
            worker.stop()
    if status.returncode != 0:
        print(f"FAIL status --json exited {status.returncode}: {status.stderr}")
        return 1
    answer = json.loads(status.stdout)
    (entry,) = answer["workers"]
    if entry["state"] != "online" or not entry["comfyui_version"]:
        print(f"FAIL status --json: {entry}")
        return 1
    if answer["master"]["state"] != "offline":
        print(f"FAIL status --json master: {answer['master']}")
        return 1
    print(
        f"ok   status --json: worker {entry['state']}, ComfyUI {entry['comfyui_version']}, "
        f"{entry['latency_ms']:.0f} ms; master {answer['master']['state']}"
    )
    return smoke_team_queue() or smoke_launch()


def smoke_team_queue() -> int:
    """The PostgreSQL client and its libpq are in the bundle: a server that does not answer
    (nothing listens on port 1) is said in words, not an ImportError."""
    url = "postgresql://smoke@127.0.0.1:1/queue"
    answer = run_binary("--queue-url", url, "queue", "list")
    if answer.returncode != 1 or "cannot use the queue's database" not in answer.stderr:
        print(f"FAIL queue list on a server: {answer.returncode} {answer.stderr!r}")
        return 1
    print(f"ok   queue list --queue-url (no server): {answer.stderr.strip()[:90]}")
    return 0


def smoke_launch(timeout: float = 90) -> int:
    """`up` of a simulated install from the bundle, as the demo does: the bundle is that
    install's Python (it has no other), so its local instances must come up."""
    with tempfile.TemporaryDirectory(prefix="bundle-up-") as folder:
        root = Path(folder)
        install = create_sim_install(root / "ComfyUI", startup_s=0)
        config = root / "fleet.json"
        worker = WorkerConfig("w1", WorkerKind.LOCAL, port=free_port(), gpu="cpu")
        master = MasterConfig(comfyui_dir=str(install), port=free_port(), gpu="cpu")
        ConfigStore(config).save(FleetConfig(master=master, workers=(worker,)))
        env = {**os.environ, "XDG_STATE_HOME": str(root / "state"), "XDG_DATA_HOME": str(root)}
        up = subprocess.Popen(
            [str(BINARY), "--config", str(config), "up"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert up.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while sum("ready" in line for line in seen) < 2 and time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            seen.append(line)
        up.send_signal(signal.SIGTERM)
        rest = up.communicate(timeout=30)[0]
    if sum("ready" in line for line in seen) < 2 or up.returncode != 0:
        print(f"FAIL up of a simulated install (exit {up.returncode}):\n{''.join(seen)}{rest}")
        return 1
    print("ok   up: the master and a local worker of a simulated install ready, then stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="build, then smoke-test the binary")
    parser.add_argument("--smoke-only", action="store_true", help="smoke-test an existing build")
    args = parser.parse_args()
    if not args.smoke_only:
        build()
    return smoke() if args.smoke or args.smoke_only else 0


if __name__ == "__main__":
    sys.exit(main())
