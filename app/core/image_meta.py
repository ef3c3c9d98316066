"""The workflow ComfyUI writes into the files it makes.

PNG (SaveImage, PreviewImage): a text chunk per entry, "prompt" (the API prompt) and "workflow"
(the frontend's UI workflow, from extra_data.extra_pnginfo). WebP (SaveAnimatedWEBP): EXIF tags,
0x0110 (Model) = "prompt:<json>" and 0x010F (Make) = "workflow:<json>", further extra_pnginfo
entries on 0x010E, 0x010D, …. Pure: bytes in, texts out.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_image(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE) or _is_webp(data)


def embedded_texts(data: bytes) -> dict[str, str]:
    """The metadata texts of a PNG or WebP ComfyUI made, by key ("prompt", "workflow"…)."""
    if data.startswith(PNG_SIGNATURE):
        return _png_texts(data)
    if _is_webp(data):
        return _webp_texts(data)
    raise ValueError("not a PNG or WebP image")


def _is_webp(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _png_texts(data: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            found[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\x00")
            found[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\x00")
            compressed, rest = rest[0], rest[2:]
            _language, _, rest = rest.partition(b"\x00")
            _translated, _, text = rest.partition(b"\x00")
            found[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode(
                "utf-8"
            )
        elif kind == b"IEND":
            break
    return found


def _webp_texts(data: bytes) -> dict[str, str]:
    offset = 12
    while offset + 8 <= len(data):
        kind = data[offset : offset + 4]
        (length,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        offset += 8 + length + (length & 1)
        if kind == b"EXIF":
            return _exif_texts(body.removeprefix(b"Exif\x00\x00"))
    return {}


def _exif_texts(tiff: bytes) -> dict[str, str]:
    """ASCII tags of IFD0 written as "key:value" (how ComfyUI stores its texts in EXIF)."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return {}
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return {}
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    found: dict[str, str] = {}
    for number in range(count):
        entry = tiff[ifd + 2 + 12 * number : ifd + 14 + 12 * number]
        if len(entry) < 12:
            break
        _tag, kind, length = struct.unpack(order + "HHI", entry[:8])
        if kind not in (2, 7):  # ASCII, or UNDEFINED bytes
            continue
        if length <= 4:
            raw = entry[8 : 8 + length]
        else:
            (at,) = struct.unpack(order + "I", entry[8:12])
            raw = tiff[at : at + length]
        key, sep, value = raw.rstrip(b"\x00").decode("utf-8", "replace").partition(":")
        if sep and key:
            found[key] = value
    return found
