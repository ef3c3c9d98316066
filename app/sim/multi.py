"""Many simulated ComfyUI instances in one process, for benchmarks:
`python -m app.sim.multi N DIR [simulator flags, e.g. --sim-time-scale 40]`.

Each instance is a full SimServer on its own loopback port; the ports are printed as one JSON
line once all of them listen.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from app.sim.server import SimServer
from app.sim.settings import load_settings
from app.sim.simlog import SimLog


class QuietLog(SimLog):
    def write(self, line: str, stream: str = "stdout") -> None:
        self.lines.append(line)


async def serve(count: int, base: Path, flags: list[str]) -> None:
    runners = []
    ports = []
    for number in range(count):
        settings = load_settings(
            ["--port", "0", "--sim-name", f"bench{number}", *flags], base / str(number)
        )
        runner = web.AppRunner(
            SimServer(settings, QuietLog()).app(), handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        ports.append(server.sockets[0].getsockname()[1])
        runners.append(runner)
    print(json.dumps({"ports": ports}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]))
