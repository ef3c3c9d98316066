"""Seeded RGB images and a small PNG encoder (no numpy; Pillow only for WebP, as ComfyUI)."""

from __future__ import annotations

import json
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    pixels: bytes  # RGB, row-major
    maker: str = ""  # which instance made it, written into the PNG
    seed: int | None = None


def solid(width: int, height: int, color: int) -> Image:
    rgb = bytes(((color >> 16) & 255, (color >> 8) & 255, color & 255))
    return Image(width, height, rgb * (width * height))


def add_noise(image: Image, seed: int, strength: float, maker: str) -> Image:
    noise = bytearray(random.Random(seed).randbytes(len(image.pixels)))
    keep = 1.0 - max(0.0, min(1.0, strength))
    for channel in range(3):
        base = image.pixels[channel]  # flat images: one value per channel is enough
        table = bytes(min(255, int(base * keep + n * (1 - keep))) for n in range(256))
        noise[channel::3] = noise[channel::3].translate(table)
    return Image(image.width, image.height, bytes(noise), maker, seed)


def invert(image: Image) -> Image:
    table = bytes(255 - n for n in range(256))
    return Image(image.width, image.height, image.pixels.translate(table), image.maker, image.seed)


def upscale2x(image: Image) -> Image:
    rows = []
    stride = image.width * 3
    for y in range(image.height):
        row = image.pixels[y * stride : (y + 1) * stride]
        wide = bytearray(stride * 2)
        for offset in range(3):
            wide[offset::6] = row[offset::3]
            wide[offset + 3 :: 6] = row[offset::3]
        rows.append(bytes(wide) * 2)
    return Image(image.width * 2, image.height * 2, b"".join(rows), image.maker, image.seed)


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def encode_png(image: Image, text: dict[str, str] | None = None) -> bytes:
    stride = image.width * 3
    raw = b"".join(
        b"\x00" + image.pixels[y * stride : (y + 1) * stride] for y in range(image.height)
    )
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, 2, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    meta = dict(text or {})
    meta["comfyfleet_sim"] = json.dumps({"maker": image.maker, "seed": image.seed})
    for key, value in meta.items():
        chunks.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("utf-8")))
    chunks.append(_chunk(b"IDAT", zlib.compress(raw, 1)))
    chunks.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG (used to tell which participant made an image)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG")
    found: dict[str, str] = {}
    offset = 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            found[key.decode("latin-1")] = value.decode("utf-8")
        offset += 12 + length
    return found


def decode_png(data: bytes) -> Image:
    """Decode what encode_png writes (filter 0, RGB 8-bit): enough for the collector."""
    width, height = struct.unpack(">II", data[16:24])
    idat = b""
    offset = 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3 + 1
    pixels = b"".join(raw[y * stride + 1 : (y + 1) * stride] for y in range(height))
    info = json.loads(png_text(data).get("comfyfleet_sim", "{}"))
    return Image(width, height, pixels, info.get("maker", ""), info.get("seed"))


def save_webp(frames: list[Image], path: Path, exif: dict[int, str], duration_ms: int) -> None:
    """An animated WebP with these EXIF tags, written with Pillow as ComfyUI writes it."""
    from PIL import Image as Pil  # only this node needs it

    made = [Pil.frombytes("RGB", (f.width, f.height), f.pixels) for f in frames]
    metadata = made[0].getexif()
    for tag, value in exif.items():
        metadata[tag] = value
    made[0].save(
        path,
        save_all=True,
        duration=duration_ms,
        append_images=made[1:],
        exif=metadata,
        lossless=True,
    )
