"""Run on a machine with an NVIDIA GPU: ComfyFleet's NVML reader next to nvidia-smi.

    python tests/benchmarks/gpu_nvml_check.py

Starts one CUDA process pinned by GPU UUID (as ComfyFleet pins workers), reads NVML through
app.services.gpus, and prints both views so they can be compared line by line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.services.gpus import GpuReader

HOLDER = """
import sys, time, torch
x = torch.empty(int(sys.argv[1]) * 2**20, dtype=torch.uint8, device="cuda")
print("holding", torch.cuda.get_device_name(0), flush=True)
time.sleep(60)
"""


def smi(*query: str) -> str:
    return subprocess.run(["nvidia-smi", *query], capture_output=True, text=True).stdout.strip()


def main() -> int:
    reader = GpuReader()
    started = time.perf_counter()
    idle = reader.read()
    print(f"first read (with nvmlInit) took {(time.perf_counter() - started) * 1000:.1f} ms")
    if not idle.available:
        print("reader:", idle.error)
        return 1
    gpu = idle.gpus[0]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu.uuid, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "2048"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        print("holder:", holder.stdout.readline().strip(), "pid", holder.pid)
        time.sleep(1.0)
        timings = []
        for _ in range(20):
            t0 = time.perf_counter()
            busy = reader.read({holder.pid: "holder"})
            timings.append((time.perf_counter() - t0) * 1000)
        print(f"read() p50 {sorted(timings)[10]:.2f} ms, max {max(timings):.2f} ms (20 reads)")
        print("reader idle:", json.dumps([g.as_json() for g in idle.gpus], indent=1))
        print("reader busy:", json.dumps([g.as_json() for g in busy.gpus], indent=1))
        print(
            "nvidia-smi gpu:",
            smi(
                "--query-gpu=index,uuid,name,pci.bus_id,memory.total,"
                "memory.used,memory.free,utilization.gpu,temperature.gpu,"
                "power.draw,power.limit",
                "--format=csv,noheader,nounits",
            ),
        )
        print(
            "nvidia-smi apps:",
            smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"),
        )
        mine = [p for g in busy.gpus for p in g.processes if p.owner == "holder"]
        print("holder attributed by PID:", [(p.pid, p.used_memory) for p in mine])
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.5)
    after = reader.read({holder.pid: "holder"})
    print(
        "after kill, holder still listed:",
        any(p.pid == holder.pid for g in after.gpus for p in g.processes),
    )
    reader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
