"""Cloud GPUs on Runpod: pods as ComfyFleet shows them, the recipe a pod is made from, and
Runpod's RFC 9457 problems in plain sentences (REFERENCE §8). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DISTRIBUTED_TEMPLATE = "m21ynvo8yo"  # ComfyUI-Distributed's pod template (CUDA 12.8)
COMFY_PORT = 8188
ACTIONS = ("start", "stop", "restart", "terminate")


@dataclass(frozen=True)
class PodRecipe:
    """How ComfyFleet makes a pod: ComfyUI-Distributed's template unless an image is given."""

    gpu_type: str = "NVIDIA GeForce RTX 4090"
    gpu_count: int = 1
    template_id: str | None = DISTRIBUTED_TEMPLATE
    image: str | None = None
    cloud: str = "SECURE"
    cuda_versions: tuple[str, ...] = ("12.8",)
    network_volume: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    def body(self, name: str) -> dict[str, Any]:
        """The POST /v2/pods request."""
        gpu: dict[str, Any] = {"id": self.gpu_type, "count": self.gpu_count}
        if self.cuda_versions:
            gpu["allowedCudaVersions"] = list(self.cuda_versions)
        made: dict[str, Any] = {"name": name, "gpu": gpu, "cloud": self.cloud}
        if self.image:
            made["image"] = self.image
        else:
            made["templateId"] = self.template_id or DISTRIBUTED_TEMPLATE
        made["ports"] = [f"{COMFY_PORT}/http"]
        if self.env:
            made["env"] = dict(self.env)
        if self.network_volume:
            made["mounts"] = {"network": [{"volumeId": self.network_volume, "path": "/workspace"}]}
        return made


@dataclass(frozen=True)
class CloudSettings:
    runpod_api_url: str = "https://api.runpod.io"
    # where a pod's HTTP port is reached ({pod}: its id, {port}: the port)
    runpod_proxy: str = "https://{pod}-{port}.proxy.runpod.net"
    recipe: PodRecipe = field(default_factory=PodRecipe)
    idle_stop_min: float = 15.0  # stop a pod after this long with no work for it (0: never)
    daily_budget_usd: float = 0.0  # stop every pod once today's spend reaches it (0: no limit)
    poll_s: float = 15.0  # how often the pods are read (and the guards look)
    # elastic: when the queue's expected wait passes elastic_wait_min, start a stopped pod (or
    # rent one from the recipe), up to elastic_max_pods billing at once
    elastic: bool = False
    elastic_wait_min: float = 10.0
    elastic_max_pods: int = 2


@dataclass(frozen=True)
class Pod:
    id: str
    name: str
    status: str
    gpu_type: str
    gpu_count: int
    cost_per_h: float
    uptime_s: int | None
    gpu_util: tuple[int, ...]
    actions: tuple[str, ...]
    ports: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Pod:
        gpu = data.get("gpu") or {}
        runtime = data.get("runtime") or {}
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name", "")),
            status=str(data.get("status", "")),
            gpu_type=str(gpu.get("id", "CPU")),
            gpu_count=int(gpu.get("count", 0) or 0),
            cost_per_h=float(data.get("cost") or 0.0),
            uptime_s=runtime.get("uptime") if isinstance(runtime.get("uptime"), int) else None,
            gpu_util=tuple(int(g.get("util", 0) or 0) for g in runtime.get("gpus") or []),
            actions=tuple(str(a) for a in data.get("actions") or []),
            ports=tuple(str(p) for p in data.get("ports") or []),
        )

    def url(self, proxy: str, port: int = COMFY_PORT) -> str:
        return proxy.format(pod=self.id, port=port).rstrip("/")


def fleet_cost_per_h(pods: Sequence[Pod]) -> float:
    return sum(p.cost_per_h for p in pods)


def money(amount: float) -> str:
    return f"${amount:,.2f}"


def uptime_text(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02}m" if hours else f"{rest // 60}m {rest % 60:02}s"


def problem_sentence(status: int, body: Any, what: str = "that") -> str:
    """An RFC 9457 problem (`{title, status, detail, errors?}`) as something a user can act on."""
    detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
    errors = body.get("errors") if isinstance(body, dict) else None
    said = f" ({detail})" if detail else ""
    if status == 401:
        return (
            "Runpod refused the API key (missing, invalid or expired): "
            "store a valid one with `comfy-fleet cloud login runpod`"
        )
    if status == 403:
        return "This Runpod API key may not manage pods: give it read/write access on runpod.io"
    if status == 402:
        return "Your Runpod balance is too low for this: add funds on runpod.io, then try again"
    if status == 400 and "capacity" in detail.lower():
        return (
            f"Runpod has no free GPU of that type right now{said}: pick another GPU type or cloud"
        )
    if status == 404:
        return f"Runpod does not know {what}{said}"
    if status == 409:
        return f"Runpod cannot do {what} in the pod's current state{said}"
    if status == 422:
        listed = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
        return f"Runpod rejected the request as invalid{said}" + (f": {listed}" if listed else "")
    if status == 429:
        return "Runpod is rate-limiting this account: wait a minute and try again"
    if status >= 500:
        return f"Runpod had a problem (HTTP {status}){said}: try again later"
    return f"Runpod refused {what} (HTTP {status}){said}"
