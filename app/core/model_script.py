"""The missing-models script: a shell script that downloads, on each worker, the models its
preflight found missing, from the sources the workflow names.

A workflow is untrusted input (people download them), so nothing from it is ever shell code:
each model name must be a safe relative path inside its model folder, each URL a plain https one
(http only to loopback), and what passes travels as data, a tab-separated list in a quoted
here-document read by a fixed loop. Tokens are read when the script runs, never written into it,
and sent only to the site they belong to (curl drops the Authorization header on a redirect to
another host). Pure: results in, text out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from app.core.names import printable
from app.core.workflow import ModelRef, PreflightResult

# Where gated downloads need a token, and the keyring entry ComfyFleet keeps it under.
TOKEN_SITES = {"huggingface.co": "huggingface", "civitai.com": "civitai"}
TOKEN_KEY = "download/{site}"

# One part of a model's path: what model files are called (letters, digits, spaces inside,
# . _ - + ( ) [ ] ,), never "." or ".." and never starting with "-" or a space.
_SAFE_PART = re.compile(r"[A-Za-z0-9_(\[][A-Za-z0-9 ._+()\[\],-]*")
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+")  # RFC 3986, no quotes or \
MAX_NAME = 255
MAX_URL = 2048
_END = "COMFYFLEET_MODELS"

_SCRIPT_HEAD = """\
#!/bin/sh
# Models missing on each worker, from ComfyFleet's preflight.
# Run the block of a worker on that machine, in its ComfyUI folder. Downloads resume where
# they stopped. Tokens for gated files are read when it runs, from $HF_TOKEN / $CIVITAI_TOKEN
# or from the keyring entry ComfyFleet keeps them in (`comfy-fleet workflow token SITE`);
# none is written here, and none goes on a command line. The lists below are data: each line
# is URL, target and site, separated by tabs.
set -eu

token() {
  case "$1" in
    huggingface) [ -n "${HF_TOKEN:-}" ] && { printf '%s' "$HF_TOKEN"; return 0; } ;;
    civitai) [ -n "${CIVITAI_TOKEN:-}" ] && { printf '%s' "$CIVITAI_TOKEN"; return 0; } ;;
  esac
  [ -n "$1" ] && python3 -m keyring get comfy-fleet "download/$1" 2>/dev/null || true
}

fetch() {  # URL TARGET [SITE]
  [ -f "$2" ] && { echo "have $2"; return 0; }
  secret=$(token "${3:-}")
  case "$secret" in
    *[!A-Za-z0-9._~+/=-]*) echo "the ${3:-} token has characters no token has" >&2; return 1 ;;
  esac
  mkdir -p "$(dirname "$2")"
  {
    printf 'url = "%s"\\n' "$1"
    [ -n "$secret" ] && printf 'header = "Authorization: Bearer %s"\\n' "$secret"
    true
  } | curl --fail --location --proto '=https,http' --retry 3 --continue-at - \\
      --output "$2.part" --config -
  mv "$2.part" "$2"
}

fetch_all() {
  while IFS='\t' read -r url target site; do
    fetch "$url" "$target" "$site"
  done
}
"""


class UnsafeModel(ValueError):
    """A model name or source URL from a workflow that must not reach the script."""


def missing_models_script(
    results: Iterable[PreflightResult], sources: Mapping[str, str] | None = None
) -> str:
    """A shell script, one block per worker: a resumable download into the right folder for each
    model whose source is known (`sources`: file name → URL, from the UI workflow), the target
    folder to fill by hand for the others, and why an unsafe name or URL was left out."""
    sources = sources or {}
    lines = [_SCRIPT_HEAD.rstrip("\n")]
    for result in results:
        if not result.missing_models:
            continue
        downloads, notes = [], []
        for ref in result.missing_models:
            try:
                target = model_target(ref)
                url = sources.get(ref.filename)
                if url is None:
                    notes.append(f"# fill by hand: {target}")
                    continue
                downloads.append("\t".join((safe_url(url), target, token_site(url))))
            except UnsafeModel as exc:
                notes.append(f"# left out: {printable(str(exc))}")
        lines += ["", f"# --- {printable(result.participant)} ---", *notes]
        if downloads:
            lines += [f"fetch_all <<'{_END}'", *downloads, _END]
    return "\n".join(lines) + "\n"


def refused_models(
    results: Iterable[PreflightResult], sources: Mapping[str, str] | None = None
) -> list[str]:
    """Why each unsafe model name or source was left out of the script, in words."""
    sources = sources or {}
    found = []
    for result in results:
        for ref in result.missing_models:
            try:
                model_target(ref)
                if ref.filename in sources:
                    safe_url(sources[ref.filename])
            except UnsafeModel as exc:
                found.append(printable(str(exc)))
    return list(dict.fromkeys(found))


def model_target(ref: ModelRef) -> str:
    """models/FOLDER/NAME for a model name that stays inside its folder; UnsafeModel if not."""
    where = f"node {ref.node}'s " if ref.node else ""
    name = ref.filename
    parts = name.split("/")
    unsafe = (
        len(name) > MAX_NAME
        or len(parts) > 8
        or not all(_SAFE_PART.fullmatch(part) and not part.endswith(" ") for part in parts)
        or any(part in (".", "..") for part in parts)
    )
    if unsafe:
        raise UnsafeModel(
            f"{where}{ref.folder} model {name!r} is not a plain file name inside its folder"
        )
    return f"models/{ref.folder}/{name}"


def safe_url(url: str) -> str:
    """A source URL that curl and this check read alike: https (http only to loopback), no
    user part, no quotes, spaces or control characters; UnsafeModel if not."""
    if len(url) > MAX_URL or not _URL_CHARS.fullmatch(url):
        raise UnsafeModel(f"the source {url[:200]!r} has characters no plain URL has")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise UnsafeModel(f"the source {url[:200]!r} is not a URL") from None
    if "@" in parts.netloc or not host:
        raise UnsafeModel(f"the source {url[:200]!r} names no plain host")
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(host)):
        raise UnsafeModel(f"the source {url[:200]!r} is not https")
    return url


def token_site(url: str) -> str:
    """The site whose token a download from `url` needs ("" for none): only over https, and
    only to that site's own host or its subdomains."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        return ""
    return next(
        (site for name, site in TOKEN_SITES.items() if host == name or host.endswith("." + name)),
        "",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
