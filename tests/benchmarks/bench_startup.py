"""Benchmark: from a bare interpreter to the first screen painted (offscreen), as the app does it.

python tests/benchmarks/bench_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import time
started = time.perf_counter()
from pathlib import Path
from app.services.paths import resolve_paths
from app.services.storage import ConfigStore
from app.ui.application import DesktopApp, create_qt_app
qt = create_qt_app([])
paths = resolve_paths(Path({config!r}))
app = DesktopApp(qt, paths, ConfigStore(paths.config_file).load())
app.window.show()
qt.processEvents()
app.window.grab()  # the first screen, painted
print(time.perf_counter() - started)
app.instance.close()
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(root)}
    times = []
    for _ in range(rounds):
        config = Path(tempfile.mkdtemp()) / "fleet.json"
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(config=str(config))],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    print(
        f"imports + QApplication + services + first screen painted, {rounds} cold-ish runs: "
        f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
        f"(target: well under 2 s; ratio {max(times) / 2:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
