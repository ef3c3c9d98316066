"""The prompt queue and executor: one job at a time, in queue order, with ComfyUI's events."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.sim.assets import with_asset_ids
from app.sim.events import EventHub
from app.sim.nodes import HANDLERS, MIB, NodeFailure, NodeResult, generic
from app.sim.settings import SimSettings
from app.sim.simlog import SimLog
from app.sim.validation import execution_order, is_link

BASELINE_VRAM = 518 * MIB  # what an idle instance held per NVML in the recordings
ExtensionHandler = Callable[["RunningNode", dict[str, Any]], Awaitable[NodeResult]]


class Interrupted(Exception):
    pass


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class QueueItem:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs, {}]

    @property
    def sid(self) -> str | None:
        client_id = self.extra_data.get("client_id")
        return str(client_id) if client_id else None


@dataclass
class RunningNode:
    """The NodeContext handed to a node while it runs."""

    engine: Engine
    item: QueueItem
    node_id: str
    class_type: str
    signature: str
    catalogue_outputs: list[str]
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def prompt_id(self) -> str:
        return self.item.prompt_id

    @property
    def maker(self) -> str:
        return self.engine.settings.name

    @property
    def png_text(self) -> dict[str, str]:
        """What ComfyUI's SaveImage writes into a PNG: the prompt, and each entry of the
        client's extra_data.extra_pnginfo (the frontend sends its UI workflow there)."""
        text = {"prompt": json.dumps(self.item.prompt)}
        extra = self.item.extra_data.get("extra_pnginfo")
        if isinstance(extra, dict):
            text.update({str(k): json.dumps(v) for k, v in extra.items()})
        return text

    @property
    def output_dir(self) -> Path:
        return self.engine.settings.output

    @property
    def temp_dir(self) -> Path:
        return self.engine.settings.temp

    async def work(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.engine.settings.time_scale)

    async def progress(self, value: int, maximum: int) -> None:
        if self.engine.interrupt_requested:
            raise Interrupted
        self.states[self.node_id].update(value=value, max=maximum)
        await self.engine.send_progress_state(self.item, self.states)
        await self.engine.events.send(
            "progress",
            {"value": value, "max": maximum, "prompt_id": self.prompt_id, "node": self.node_id},
            self.item.sid,
        )

    def load_model(self, name: str, size: int) -> None:
        self.engine.loaded_models[name] = size

    async def call_extension(self, name: str, inputs: dict[str, Any]) -> NodeResult:
        handler = self.engine.extension_nodes.get(name)
        if handler is None:
            raise NodeFailure("RuntimeError", f"{name} is not available on this instance")
        return await handler(self, inputs)


class Engine:
    def __init__(
        self, settings: SimSettings, catalogue: dict[str, Any], events: EventHub, log: SimLog
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.events = events
        self.log = log
        self.pending: list[QueueItem] = []
        self.running: QueueItem | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.loaded_models: dict[str, int] = {}
        self.working_vram = 0
        self.interrupt_requested = False
        self.jobs_done = 0
        self.extension_nodes: dict[str, ExtensionHandler] = {}
        self.on_job_done: Callable[[int], None] = lambda done: None
        self._number = 0
        self._cache: dict[str, NodeResult] = {}
        self._wake = asyncio.Event()

    @property
    def queue_remaining(self) -> int:
        return len(self.pending) + (1 if self.running else 0)

    def vram_used(self) -> int:
        return BASELINE_VRAM + sum(self.loaded_models.values()) + self.working_vram

    async def send_status(self) -> None:
        await self.events.send(
            "status", {"status": {"exec_info": {"queue_remaining": self.queue_remaining}}}
        )

    async def submit(
        self,
        prompt: dict[str, Any],
        client_id: str | None,
        outputs: list[str],
        extra: dict[str, Any] | None = None,
        prompt_id: str | None = None,
    ) -> QueueItem:
        extra_data = {"create_time": now_ms(), **(extra or {})}
        if self.settings.comfyui_version == "0.38":  # its credentials never leave the server
            for key in ("auth_token_comfy_org", "api_key_comfy_org"):
                extra_data.pop(key, None)
        if client_id:
            extra_data["client_id"] = client_id
        item = QueueItem(self._number, prompt_id or str(uuid.uuid4()), prompt, extra_data, outputs)
        self._number += 1
        self.pending.append(item)
        self.log.write("got prompt")  # (as recorded in the log routes' events)
        self._wake.set()
        await self.send_status()
        return item

    def delete_pending(self, prompt_ids: list[str]) -> None:
        self.pending = [i for i in self.pending if i.prompt_id not in prompt_ids]

    def clear_pending(self) -> None:
        self.pending.clear()

    def interrupt(self, prompt_id: str | None = None) -> None:
        if self.running and (prompt_id is None or prompt_id == self.running.prompt_id):
            self.interrupt_requested = True

    def free(self, unload_models: bool) -> None:
        if unload_models:
            self.loaded_models.clear()

    async def run_forever(self) -> None:
        while True:
            while not self.pending:
                self._wake.clear()
                await self._wake.wait()
            item = self.pending.pop(0)
            self.running = item
            self.interrupt_requested = False
            try:
                await self.send_status()
                await self._execute(item)
            finally:
                self.running = None
                self.working_vram = 0
            await self.send_status()
            await self.events.send(
                "executing", {"node": None, "prompt_id": item.prompt_id}, item.sid
            )
            self.jobs_done += 1
            self.on_job_done(self.jobs_done)

    async def send_progress_state(self, item: QueueItem, states: dict[str, Any]) -> None:
        await self.events.send(
            "progress_state",
            {"prompt_id": item.prompt_id, "nodes": json.loads(json.dumps(states))},
            item.sid,
        )

    async def _message(
        self, item: QueueItem, messages: list[Any], event: str, data: dict[str, Any]
    ) -> None:
        data = {**data, "prompt_id": item.prompt_id, "timestamp": now_ms()}
        messages.append([event, data])
        await self.events.send(event, data, item.sid)

    async def _execute(self, item: QueueItem) -> None:
        messages: list[Any] = []
        order = execution_order(item.prompt, item.outputs)
        signatures = self._signatures(item.prompt, order)
        cached = [n for n in order if signatures[n] in self._cache]
        await self._message(item, messages, "execution_start", {})
        await self._message(item, messages, "execution_cached", {"nodes": cached})
        results: dict[str, NodeResult] = {n: self._cache[signatures[n]] for n in cached}
        states: dict[str, dict[str, Any]] = {}
        outputs: dict[str, Any] = {}
        self.working_vram = 256 * MIB
        status = "success"
        try:
            for node_id in order:
                if node_id not in results:
                    results[node_id] = await self._run_node(
                        item, node_id, signatures[node_id], results, states
                    )
                    ui = results[node_id].ui
                else:
                    ui = results[node_id].ui
                    if ui is not None:  # a cached output node replays its files
                        await self._executed(item, node_id, ui)
                if ui is not None:
                    outputs[node_id] = ui
            await self._message(item, messages, "execution_success", {})
        except Interrupted:
            status = "error"
            node = next((n for n in order if n not in results), order[-1])
            await self._message(
                item,
                messages,
                "execution_interrupted",
                {
                    "node_id": node,
                    "node_type": item.prompt[node]["class_type"],
                    "executed": [n for n in order if n in results and n not in cached],
                },
            )
            self.log.write(f"Processing interrupted (prompt {item.prompt_id})")
        except NodeFailure as failure:
            status = "error"
            await self._message(
                item,
                messages,
                "execution_error",
                self._error_data(item, order, results, cached, failure),
            )
            self.log.write(f"!!! Exception during processing !!! {failure.message.strip()}")
        self._cache = {signatures[n]: r for n, r in results.items()}
        self.history[item.prompt_id] = {
            "prompt": item.as_list(),
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": {
                n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                for n in outputs
            },
        }
        took = time.time() - item.extra_data["create_time"] / 1000
        self.log.write(f"Prompt executed in {took:.2f} seconds")

    def _error_data(
        self,
        item: QueueItem,
        order: list[str],
        results: dict[str, NodeResult],
        cached: list[str],
        failure: NodeFailure,
    ) -> dict[str, Any]:
        node = next(n for n in order if n not in results)
        return {
            "node_id": node,
            "node_type": item.prompt[node]["class_type"],
            "executed": [n for n in order if n in results and n not in cached],
            "exception_message": failure.message,
            "exception_type": failure.exception_type,
            "traceback": [
                f'  File "/opt/ComfyUI/execution.py", line 496, in execute\n'
                f"    raise {failure.exception_type}\n"
            ],
            "current_inputs": {
                name: [value if isinstance(value, int | float | str) else repr(value)]
                for name, value in item.prompt[node].get("inputs", {}).items()
            },
            "current_outputs": list(item.prompt),
        }

    async def _run_node(
        self,
        item: QueueItem,
        node_id: str,
        signature: str,
        results: dict[str, NodeResult],
        states: dict[str, Any],
    ) -> NodeResult:
        if self.interrupt_requested:
            raise Interrupted
        class_type = item.prompt[node_id]["class_type"]
        states[node_id] = {
            "value": 0.0,
            "max": 1.0,
            "state": "running",
            "node_id": node_id,
            "prompt_id": item.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        await self.send_progress_state(item, states)
        await self.events.send(
            "executing",
            {"node": node_id, "display_node": node_id, "prompt_id": item.prompt_id},
            item.sid,
        )
        if self.settings.faults.vram_full:
            raise NodeFailure("torch.OutOfMemoryError", _oom_message(self.settings.vram_total))
        context = RunningNode(
            self,
            item,
            node_id,
            class_type,
            signature,
            list(self.catalogue[class_type]["output"]),
            states,
        )
        inputs = self._resolve_inputs(item.prompt[node_id].get("inputs", {}), results)
        result = await HANDLERS.get(class_type, generic)(context, inputs)
        if result.ui is not None and self.settings.assets:
            result = NodeResult(result.outputs, with_asset_ids(result.ui))
        if result.ui is not None:
            await self._executed(item, node_id, result.ui)
        states[node_id].update(value=states[node_id]["max"], state="finished")
        await self.send_progress_state(item, states)
        return result

    async def _executed(self, item: QueueItem, node_id: str, ui: dict[str, Any]) -> None:
        await self.events.send(
            "executed",
            {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": item.prompt_id},
            item.sid,
        )

    @staticmethod
    def _resolve_inputs(inputs: dict[str, Any], results: dict[str, NodeResult]) -> dict[str, Any]:
        return {
            name: results[value[0]].outputs[value[1]] if is_link(value) else value
            for name, value in inputs.items()
        }

    @staticmethod
    def _signatures(prompt: dict[str, Any], order: list[str]) -> dict[str, str]:
        signatures: dict[str, str] = {}
        for node_id in order:  # dependencies come first
            node = prompt[node_id]
            inputs = {
                name: ["link", signatures.get(value[0], value[0]), value[1]]
                if is_link(value)
                else value
                for name, value in node.get("inputs", {}).items()
            }
            text = json.dumps([node["class_type"], inputs], sort_keys=True, default=str)
            signatures[node_id] = hashlib.sha256(text.encode()).hexdigest()
        return signatures


def _oom_message(total: int) -> str:
    return (
        f"CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        f"{total / 1024**3:.2f} GiB of which 0 bytes is free."
    )
