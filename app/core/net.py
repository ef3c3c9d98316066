"""Host, address and URL rules shared by the config, the monitor and ComfyUI-Distributed."""

from __future__ import annotations

import ipaddress
import re
import shlex
from urllib.parse import urlsplit

from app.core.errors import ConfigError

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_RUNPOD_POD_ID = re.compile(r"^[a-z0-9]{8,24}$")
RUNPOD_PROXY_SUFFIX = ".proxy.runpod.net"
HTTPS_SUFFIXES = (".trycloudflare.com", RUNPOD_PROXY_SUFFIX)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
CLOUD_HTTPS_PORT = 443
CLOUD_PORT_ONLY = (
    "{address}: a cloud worker is reached at https://HOST on port 443, as ComfyUI-Distributed "
    "reaches it; for another port or plain http, add it as a remote worker"
)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def normalize_host(text: str) -> str:
    """A host as the user may write it: spaces trimmed, an IPv6 address without its URL
    brackets (`[::1]` → `::1`; the brackets come back in URLs)."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]") and _ip(host) is not None:
        return host[1:-1]
    return host


def validate_host(host: str, field_name: str = "host") -> None:
    """A bare host name or IP address: no scheme, port or path."""
    if not host:
        raise ConfigError(field_name, "a host is required")
    if _ip(host) is not None:
        return
    if "://" in host or "/" in host or ":" in host:
        raise ConfigError(field_name, f"{host!r} is not a host name (leave out scheme and port)")
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(field_name, f"{host!r} is not a valid host name")


def is_loopback(host: str) -> bool:
    address = _ip(host)
    if address is not None:
        return address.is_loopback
    return host.lower() in _LOOPBACK_NAMES


def uses_https(host: str, port: int, cloud: bool = False) -> bool:
    return cloud or port == 443 or host.lower().endswith(HTTPS_SUFFIXES) or ".ngrok" in host


def base_url(host: str, port: int, cloud: bool = False) -> str:
    """The URL a ComfyUI instance answers on, by ComfyUI-Distributed's rules."""
    host = normalize_host(host)
    shown = f"[{host}]" if ":" in host else host
    if uses_https(host, port, cloud):
        return f"https://{shown}"
    return f"http://{shown}:{port}"


def parse_cloud_address(text: str, comfy_port: int = 8188) -> tuple[str, int]:
    """Accept a host, an https URL, or a bare Runpod pod id; return (host, port)."""
    text = text.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ConfigError("host", f"{text!r} is not a URL: {exc}") from None
        if not parts.hostname:
            raise ConfigError("host", f"{text!r} has no host name")
        if port not in (None, CLOUD_HTTPS_PORT) or parts.scheme != "https":
            raise ConfigError("host", CLOUD_PORT_ONLY.format(address=text))
        return parts.hostname, CLOUD_HTTPS_PORT
    if _RUNPOD_POD_ID.match(text):
        return f"{text}-{comfy_port}{RUNPOD_PROXY_SUFFIX}", 443
    if re.match(r"^[a-z0-9]{8,24}-\d{2,5}$", text):
        return f"{text}{RUNPOD_PROXY_SUFFIX}", 443
    host = normalize_host(text)
    validate_host(host)
    return host, CLOUD_HTTPS_PORT


def split_args(text: str, field_name: str = "extra_args") -> tuple[str, ...]:
    """Split extra arguments with shell quoting rules; nothing ever runs through a shell."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(field_name, f"cannot split {text!r}: {exc}") from None


def join_args(args: tuple[str, ...] | list[str]) -> str:
    return shlex.join(args)
