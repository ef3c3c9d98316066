"""Names (of workers, participants, files a server names) made into safe file names: the one
mapping every path that holds a name goes through."""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# Windows treats these as devices whatever the extension: never a file of ours.
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(10)), *(f"LPT{n}" for n in range(10))}
)


def file_stem(name: str) -> str:
    """A name as a file name without extension: letters, digits, '_' and '-' are kept; when
    anything else had to be replaced, a short hash of the name keeps distinct names apart.
    Never empty, never '.', '..' or a path."""
    stem = _UNSAFE.sub("_", name)[:80]
    if stem != name or not stem or stem.upper() in _RESERVED:
        stem = f"{stem}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"
    return stem


def file_name(name: str) -> str:
    """A file name given by someone else (a server's image name): its last part alone, with
    its extension kept when that is plain."""
    last = re.split(r"[\\/]", name)[-1]
    stem, dot, extension = last.rpartition(".")
    if dot and stem and re.fullmatch(r"[A-Za-z0-9]{1,8}", extension):
        return f"{file_stem(stem)}.{extension}"
    return file_stem(last)


def printable(text: str) -> str:
    """Text from elsewhere (a job's name, a worker's error) made safe for a terminal: control
    characters (ANSI escapes, carriage returns) shown as escapes, never acted on."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
