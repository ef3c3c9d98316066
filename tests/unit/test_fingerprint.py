"""Telling images apart after a PNG round trip through the master."""

from __future__ import annotations

import io
import random

from PIL import Image

from app.core.fingerprint import closest, distance, fingerprint
from app.sim.images import add_noise, encode_png, solid


def noise_png(seed: int, size: int = 512) -> bytes:
    return encode_png(add_noise(solid(size, size, 0x808080), seed, 0.5, "test"))


def off_by_one(png: bytes) -> bytes:
    """What a float round trip can do: some channel values one lower."""
    with Image.open(io.BytesIO(png)) as image:
        pixels = bytearray(image.convert("RGB").tobytes())
        size = image.size
    rng = random.Random(0)
    for index in range(0, len(pixels), 3):
        if pixels[index] and rng.random() < 0.5:
            pixels[index] -= 1
    out = io.BytesIO()
    Image.frombytes("RGB", size, bytes(pixels)).save(out, "PNG", compress_level=4)
    return out.getvalue()


def test_the_same_image_survives_a_round_trip_and_other_seeds_do_not_match() -> None:
    prints = {f"w{s}": [fingerprint(noise_png(s))] for s in (1235, 1236)}
    master_copy = fingerprint(off_by_one(noise_png(1236)))
    assert distance(master_copy, prints["w1236"][0]) < 1
    assert distance(master_copy, prints["w1235"][0]) > 20
    assert closest(master_copy, prints) == "w1236"
    assert closest(fingerprint(noise_png(1234)), prints) is None  # the master's own image
