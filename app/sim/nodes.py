"""The node implementations: real pixels for the model-free nodes, simulated time for the rest."""

from __future__ import annotations

import asyncio
import hashlib
import random
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.sim import images
from app.sim.images import Image

MIB = 1024**2


class NodeFailure(Exception):
    """A node raised while running (ComfyUI reports it as execution_error)."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


@dataclass
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None


class NodeContext(Protocol):
    """What a node may use of the engine that runs it."""

    node_id: str
    class_type: str
    signature: str
    catalogue_outputs: list[str]

    @property
    def prompt_id(self) -> str: ...
    @property
    def maker(self) -> str: ...
    @property
    def png_text(self) -> dict[str, str]: ...
    @property
    def output_dir(self) -> Path: ...
    @property
    def temp_dir(self) -> Path: ...

    async def work(self, seconds: float) -> None: ...
    async def progress(self, value: int, maximum: int) -> None: ...
    def load_model(self, name: str, size: int) -> None: ...
    async def call_extension(self, name: str, inputs: dict[str, Any]) -> NodeResult: ...


Handler = Callable[[NodeContext, dict[str, Any]], Awaitable[NodeResult]]


@dataclass
class _Counters:
    """Numbering of saved files, per folder and prefix, as ComfyUI does."""

    temp_prefix: str = field(
        default_factory=lambda: (
            "ComfyUI_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))
        )
    )


COUNTERS = _Counters()


def _pixels(batch: list[Image]) -> int:
    return sum(i.width * i.height for i in batch)


async def empty_image(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    w, h, n = int(inputs["width"]), int(inputs["height"]), int(inputs["batch_size"])
    await ctx.work(0.005 + w * h * n * 1e-8)
    return NodeResult(([images.solid(w, h, int(inputs["color"]))] * n,))


async def image_add_noise(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    batch, seed = inputs["image"], int(inputs["seed"])
    await ctx.work(0.015 + _pixels(batch) * 5e-8)
    noisy = await asyncio.to_thread(
        lambda: [
            images.add_noise(img, seed + i, float(inputs["strength"]), ctx.maker)
            for i, img in enumerate(batch)
        ]
    )
    return NodeResult((noisy,))


async def image_invert(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    await ctx.work(0.005)
    return NodeResult(([images.invert(i) for i in inputs["image"]],))


async def image_blur(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    batch, radius = inputs["image"], int(inputs["blur_radius"])
    first = batch[0]
    if radius >= min(first.width, first.height):
        raise NodeFailure(
            "RuntimeError",
            "Argument #4: Padding size should be less than the corresponding input dimension, "
            f"but got: padding ({radius}, {radius}) at dimension 3 of input "
            f"[{len(batch)}, 3, {first.height}, {first.width}]\n",
        )
    await ctx.work(0.01 + _pixels(batch) * 1.5e-6)
    return NodeResult((batch,))


async def _save(
    ctx: NodeContext, batch: list[Image], folder: Path, prefix: str, kind: str
) -> NodeResult:
    """ComfyUI's SaveImage (nodes.py, folder_paths.get_save_image_path in 0.3.64): the counter is
    read from the folder once, before the slow PNG writes, so two instances saving into one
    folder at the same moment write the same name and the later file replaces the earlier."""
    folder.mkdir(parents=True, exist_ok=True)
    counter = _next_counter(folder, prefix)
    results = []
    for number, image in enumerate(batch):
        await ctx.work(0.06 / len(batch) + _pixels([image]) * 1e-7)
        filename = f"{prefix}_{counter + number:05}_.png"
        data = await asyncio.to_thread(images.encode_png, image, ctx.png_text)
        (folder / filename).write_bytes(data)
        results.append({"filename": filename, "subfolder": "", "type": kind})
    return NodeResult((), {"images": results})


def _next_counter(folder: Path, prefix: str, extension: str = "png") -> int:
    numbers = [
        int(p.name[len(prefix) + 1 : len(prefix) + 6])
        for p in folder.glob(f"{prefix}_?????_.{extension}")
        if p.name[len(prefix) + 1 : len(prefix) + 6].isdigit()
    ]
    return max(numbers, default=0) + 1


async def save_animated_webp(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    """ComfyUI's SaveAnimatedWEBP: every frame in one WebP, its prompt and extra_pnginfo in EXIF
    (0x0110 "prompt:<json>", then 0x010F, 0x010E, … "<key>:<json>")."""
    batch, prefix = inputs["images"], str(inputs.get("filename_prefix") or "ComfyUI")
    folder = ctx.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{prefix}_{_next_counter(folder, prefix, 'webp'):05}_.webp"  # before, as _save
    await ctx.work(0.06 + _pixels(batch) * 2e-7)
    text = dict(ctx.png_text)
    exif = {0x0110: f"prompt:{text.pop('prompt')}"}
    exif.update({0x010F - n: f"{key}:{value}" for n, (key, value) in enumerate(text.items())})
    fps = float(inputs.get("fps") or 6.0)
    await asyncio.to_thread(images.save_webp, batch, folder / filename, exif, int(1000.0 / fps))
    return NodeResult(
        (),
        {
            "images": [{"filename": filename, "subfolder": "", "type": "output"}],
            "animated": (len(batch) != 1,),
        },
    )


async def save_image(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    prefix = str(inputs.get("filename_prefix") or "ComfyUI")
    return await _save(ctx, inputs["images"], ctx.output_dir, prefix, "output")


async def preview_image(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    return await _save(ctx, inputs["images"], ctx.temp_dir, COUNTERS.temp_prefix, "temp")


async def upscale_model_loader(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    ctx.load_model(str(inputs["model_name"]), 64 * MIB)
    await ctx.work(0.01)
    return NodeResult((f"upscale_model:{inputs['model_name']}",))


async def image_upscale_with_model(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    batch = inputs["image"]
    steps = 9  # tiles, as the recorded run reported
    for step in range(1, steps + 1):
        await ctx.work(0.02 + _pixels(batch) * 5e-8)
        await ctx.progress(step, steps)
    scaled = await asyncio.to_thread(lambda: [images.upscale2x(i) for i in batch])
    return NodeResult((scaled,))


async def checkpoint_loader(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    ctx.load_model(str(inputs["ckpt_name"]), 6_500 * MIB)
    await ctx.work(0.8)
    name = inputs["ckpt_name"]
    return NodeResult((f"model:{name}", f"clip:{name}", f"vae:{name}"))


@dataclass(frozen=True)
class Latent:
    """A latent batch as far as time goes: a sampler's step costs in proportion to its pixels."""

    width: int = 512
    height: int = 512
    batch: int = 1

    @property
    def work(self) -> float:
        return self.width * self.height * self.batch / (512 * 512)


STEP_S = 0.03  # one sampler step on a 512×512 latent of batch 1


def _latent(inputs: dict[str, Any]) -> Latent:
    """Made here (EmptyLatentImage's width, height, batch_size) or handed in by a link."""
    size = [inputs.get(k) for k in ("width", "height", "batch_size")]
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        return Latent(*size)  # type: ignore[arg-type]
    return next((v for v in inputs.values() if isinstance(v, Latent)), Latent())


async def generic(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    """Any other catalogued node: it takes time (a sampler's steps in proportion to pixels ×
    steps × batch), steps report progress, IMAGE outputs are real."""
    steps = inputs.get("steps")
    latent = _latent(inputs)
    if isinstance(steps, int) and 0 < steps <= 1000:
        for step in range(1, steps + 1):
            await ctx.work(STEP_S * latent.work)
            await ctx.progress(step, steps)
    else:
        await ctx.work(0.03)
    seed = int(hashlib.sha256(ctx.signature.encode()).hexdigest()[:12], 16)
    outputs: list[Any] = []
    for kind in ctx.catalogue_outputs:
        if kind == "IMAGE":
            outputs.append(
                [images.add_noise(images.solid(512, 512, 0x808080), seed, 1.0, ctx.maker)]
            )
        elif kind == "LATENT":
            outputs.append(latent)
        else:
            outputs.append(f"{kind.lower()}:{ctx.node_id}")
    return NodeResult(tuple(outputs), {"images": []} if not ctx.catalogue_outputs else None)


async def extension(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    return await ctx.call_extension(ctx.class_type, inputs)


HANDLERS: dict[str, Handler] = {
    "EmptyImage": empty_image,
    "ImageAddNoise": image_add_noise,
    "ImageInvert": image_invert,
    "ImageBlur": image_blur,
    "SaveImage": save_image,
    "SaveAnimatedWEBP": save_animated_webp,
    "PreviewImage": preview_image,
    "UpscaleModelLoader": upscale_model_loader,
    "ImageUpscaleWithModel": image_upscale_with_model,
    "CheckpointLoaderSimple": checkpoint_loader,
    "DistributedSeed": extension,
    "DistributedCollector": extension,
}
