"""Add worker (local): a GPU picker listing this machine's GPUs with who uses each, and a
worker with no GPU marked as computing on GPU 0 beside whoever is there."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import QApplication

from app.core.config import FleetConfig, MasterConfig, WorkerConfig, WorkerKind
from app.services.gpus import GpuReading
from app.ui.worker_dialog import WorkerDialog

GPUS = tuple(
    GpuReading(i, name, f"GPU-{i}ccc", f"0000:0{i}:00.0", 24 * 2**30, 0, 24 * 2**30, 0, 30, 70, 450)
    for i, name in enumerate(("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090"))
)


async def never(url: str) -> str:
    raise AssertionError("not tested here")


def test_the_picker_lists_the_gpus_with_their_users(qapp: QApplication) -> None:
    config = FleetConfig(master=MasterConfig(gpu="GPU-0ccc"))
    dialog = WorkerDialog(config, never, gpus=GPUS)
    labels = [dialog.gpu.itemText(i) for i in range(dialog.gpu.count())]
    assert labels == [
        "0: NVIDIA GeForce RTX 4090 · 24 GiB · GPU-0ccc — used by the master",
        "1: NVIDIA GeForce RTX 3090 · 24 GiB · GPU-1ccc",
    ]
    dialog.name.setText("gpu1")
    assert dialog.gpu_hint.text() == (
        "No GPU chosen: it computes on GPU 0, which the master uses too. Pick one of its own."
    )
    dialog.gpu.setCurrentIndex(1)
    assert dialog.build().gpu == "GPU-1ccc" and dialog.gpu_hint.text() == ""
    dialog.gpu.setCurrentIndex(0)
    assert "the master uses this GPU too" in dialog.gpu_hint.text()
    dialog.gpu.setEditText("cpu")
    assert dialog.build().gpu == "cpu" and dialog.gpu_hint.text() == ""


def test_editing_a_worker_shows_its_gpu_by_index_or_uuid(qapp: QApplication) -> None:
    worker = WorkerConfig("gpu1", WorkerKind.LOCAL, port=8189, gpu="1")
    config = FleetConfig(master=MasterConfig(gpu="0"), workers=(worker,))
    dialog = WorkerDialog(config, never, worker, gpus=GPUS)
    assert dialog.gpu.currentIndex() == 1 and dialog.build().gpu == "GPU-1ccc"
    assert "used by" not in dialog.gpu.itemText(1)  # (itself)
    by_uuid = dataclasses.replace(worker, gpu="GPU-0ccc")
    again = WorkerDialog(dataclasses.replace(config, workers=(by_uuid,)), never, by_uuid, gpus=GPUS)
    assert again.gpu.currentIndex() == 0 and "used by the master" in again.gpu.itemText(0)
    without = WorkerDialog(config, never, gpus=())  # no NVML: typed, as before
    without.gpu.setEditText("2")
    assert without.build().gpu == "2" and without.gpu_hint.text() == ""
