"""The workflow ComfyUI writes into the files it makes.

PNG (SaveImage, PreviewImage): a text chunk per entry, "prompt" (the API prompt) and "workflow"
(the frontend's UI workflow, from extra_data.extra_pnginfo). WebP (SaveAnimatedWEBP): EXIF tags,
0x0110 (Model) = "prompt:<json>" and 0x010F (Make) = "workflow:<json>", further extra_pnginfo
entries on 0x010E, 0x010D, …. MP4 (SaveVideo, through PyAV with movflags use_metadata_tags):
QuickTime metadata, moov/udta/meta with `keys` ("prompt", "workflow") and `ilst` values.
Pure: bytes in, texts out. What a file claims is never trusted: a compressed text inflates to
MAX_TEXT_BYTES at most, a count or size is bounded by the bytes that are there.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 32 * 1024 * 1024  # all of a file's texts inflated: a workflow is a few MB


def is_media(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE) or _is_webp(data) or _is_mp4(data)


def embedded_texts(data: bytes) -> dict[str, str]:
    """The metadata texts of a PNG, WebP or MP4 ComfyUI made, by key ("prompt", "workflow"…);
    ValueError for a file that is none of them, or is damaged."""
    if data.startswith(PNG_SIGNATURE):
        read = _png_texts
    elif _is_webp(data):
        read = _webp_texts
    elif _is_mp4(data):
        read = _mp4_texts
    else:
        raise ValueError("not a PNG, WebP or MP4 file")
    try:
        return read(data)
    except (struct.error, zlib.error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"damaged metadata ({exc})") from None


class _Inflater:
    """Inflates a file's compressed texts, MAX_TEXT_BYTES in all (a bomb is stopped there)."""

    def __init__(self) -> None:
        self.left = MAX_TEXT_BYTES

    def __call__(self, compressed: bytes) -> bytes:
        text = zlib.decompressobj().decompress(compressed, self.left + 1)
        if len(text) > self.left:
            raise ValueError(
                f"its texts inflate past {MAX_TEXT_BYTES // 2**20} MB: not a workflow ComfyUI wrote"
            )
        self.left -= len(text)
        return text


def _is_webp(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _png_texts(data: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    inflated = _Inflater()
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
            found[key.decode("latin-1")] = inflated(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\x00")
            compressed, rest = rest[0], rest[2:]
            _language, _, rest = rest.partition(b"\x00")
            _translated, _, text = rest.partition(b"\x00")
            raw = inflated(text) if compressed else text
            found[key.decode("latin-1")] = raw.decode("utf-8")
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
    left = MAX_TEXT_BYTES  # 65,535 tags may each point at the whole file: read it once at most
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
        left -= len(raw)
        if left < 0:
            raise ValueError(
                f"its texts add up past {MAX_TEXT_BYTES // 2**20} MB: not a workflow ComfyUI wrote"
            )
        key, sep, value = raw.rstrip(b"\x00").decode("utf-8", "replace").partition(":")
        if sep and key:
            found[key] = value
    return found


def _is_mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


CONTAINERS = frozenset({b"moov", b"udta", b"meta"})


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes in data[start:end]."""
    found = []
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
            header = 16
        elif size == 0:
            size = end - offset
        if size < header:
            break
        found.append((kind, offset + header, min(end, offset + size)))
        offset += size
    return found


def _mp4_texts(data: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    stack = [(b"", 0, len(data))]
    while stack:
        _, start, end = stack.pop()
        boxes = _boxes(data, start, end)
        kinds = {kind: (a, b) for kind, a, b in boxes}
        if b"keys" in kinds and b"ilst" in kinds:
            found.update(_mdta(data, kinds[b"keys"], kinds[b"ilst"]))
        for kind, a, b in boxes:
            if kind in CONTAINERS:
                # an ISO meta box has version and flags first; QuickTime's (ffmpeg's) has not
                skip = 4 if kind == b"meta" and data[a + 4 : a + 8] != b"hdlr" else 0
                stack.append((kind, a + skip, b))
    return found


def _mdta(data: bytes, keys: tuple[int, int], ilst: tuple[int, int]) -> dict[str, str]:
    start, end = keys
    (count,) = struct.unpack(">I", data[start + 4 : start + 8])
    names, offset = [], start + 8
    for _ in range(count):  # each key is 8 bytes or more: the box's end comes first
        size = struct.unpack(">I", data[offset : offset + 4])[0]
        if size < 8 or offset + size > end:
            break
        names.append(data[offset + 8 : offset + size].decode("utf-8", "replace"))
        offset += size
    found: dict[str, str] = {}
    for kind, a, b in _boxes(data, *ilst):
        index = int.from_bytes(kind, "big") - 1
        for inner, c, d in _boxes(data, a, b):
            if inner == b"data" and 0 <= index < len(names):
                found[names[index]] = data[c + 8 : d].decode("utf-8", "replace")
    return found
