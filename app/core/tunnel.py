"""cloudflared, as pure decisions: its command line, what its output means, which release."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

PINNED_VERSION = "2025.7.0"
# SHA-256 of each pinned release asset, from the "SHA256 Checksums" of Cloudflare's release
# notes for 2025.7.0 (as quoted in public dependency-update pull requests: this machine cannot
# reach GitHub). Verified before anything is made executable; a mismatch is refused. Assets
# without a pin here (linux-arm64, windows) need `tunnel install --sha256 HEX`.
PINNED_SHA256: dict[str, str] = {
    "cloudflared-linux-amd64": "173276e3370f366493fb818ebe33cca23a9601d721ca3c03085b3f838eaf3ca9",
    "cloudflared-darwin-amd64.tgz": (
        "79f8edbba4db1b3de3da73030f5a1718b98d03dd752ca7d716984bde5d5ac9e5"
    ),
    "cloudflared-darwin-arm64.tgz": (
        "70e943358a44113c3e900e383c94a9eba933858b5501bec251d6531046ae1719"
    ),
}
EXPOSURE = (
    "A tunnel makes the master reachable by anyone who has its URL, and ComfyUI has no login. "
    "Continue?"
)
BANNER = re.compile(r"https://([a-z0-9-]+\.trycloudflare\.com)")


class TunnelState(StrEnum):
    STARTING = "starting"
    URL_KNOWN = "url known"
    READY = "ready"
    STOPPED = "stopped"
    FAILED = "failed"


class TunnelFailure(StrEnum):
    NO_NETWORK = "no network"
    RATE_LIMITED = "rate limited"
    UDP_BLOCKED = "UDP blocked"
    BINARY_MISSING = "cloudflared missing"
    EXITED = "exited"
    NEVER_CONNECTED = "never connected"


ADVICE = {
    TunnelFailure.NO_NETWORK: "cloudflared could not reach Cloudflare: check the internet "
    "connection and DNS",
    TunnelFailure.RATE_LIMITED: "Cloudflare is rate-limiting quick tunnels from this address: "
    "wait a few minutes, or use a named tunnel",
    TunnelFailure.UDP_BLOCKED: "QUIC (UDP port 7844) is blocked here: turn on the HTTP/2 "
    "option (--http2)",
    TunnelFailure.BINARY_MISSING: "cloudflared is not installed: let ComfyFleet download the "
    "pinned release, or set its path",
    TunnelFailure.EXITED: "cloudflared stopped: see its last log lines",
    TunnelFailure.NEVER_CONNECTED: "cloudflared runs but never connected to Cloudflare: check "
    "the internet connection, a firewall or proxy (or try the HTTP/2 option)",
}
_FAILURES: tuple[tuple[TunnelFailure, re.Pattern[str]], ...] = (
    (TunnelFailure.RATE_LIMITED, re.compile(r"error code: 1015|429 Too Many Requests", re.I)),
    (
        TunnelFailure.UDP_BLOCKED,
        re.compile(
            r"Failed to dial a quic connection|"
            r"egress UDP .*blocked",
            re.I,
        ),
    ),
    (
        TunnelFailure.NO_NETWORK,
        re.compile(
            r"failed to request quick Tunnel|no such host|"
            r"network is unreachable",
            re.I,
        ),
    ),
)


def quick_tunnel_argv(
    binary: str, port: int, metrics_port: int, http2: bool, host: str = "127.0.0.1"
) -> list[str]:
    argv = [
        binary,
        "tunnel",
        "--no-autoupdate",
        "--url",
        f"http://{host}:{port}",
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        "--grace-period",
        "5s",
    ]
    return argv + (["--protocol", "http2"] if http2 else [])


def named_tunnel_argv(binary: str, metrics_port: int, http2: bool) -> list[str]:
    """The token travels in TUNNEL_TOKEN, never here: argv is visible to every user."""
    argv = [
        binary,
        "tunnel",
        "--no-autoupdate",
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        "--grace-period",
        "5s",
    ]
    return argv + (["--protocol", "http2"] if http2 else []) + ["run"]


def url_from_banner(lines: Sequence[str]) -> str | None:
    """The fallback when /quicktunnel does not answer: the banner line `|  https://x…  |`.
    Error lines mention https://api.trycloudflare.com, which is not a tunnel URL."""
    for line in lines:
        if "|" not in line:
            continue
        match = BANNER.search(line)
        if match and not match.group(1).startswith("api."):
            return f"https://{match.group(1)}"
    return None


def classify_failure(lines: Sequence[str]) -> TunnelFailure:
    for line in reversed(lines[-60:]):
        for failure, pattern in _FAILURES:
            if pattern.search(line):
                return failure
    return TunnelFailure.EXITED


@dataclass(frozen=True)
class ReleaseAsset:
    name: str
    archive: bool  # macOS releases are .tgz


def release_asset(system: str, machine: str) -> ReleaseAsset:
    """Cloudflare's asset for this OS/CPU (platform.system(), platform.machine())."""
    cpu = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine.lower()
    )
    if cpu is None:
        raise ValueError(f"no cloudflared release for CPU {machine}")
    match system:
        case "Linux":
            return ReleaseAsset(f"cloudflared-linux-{cpu}", False)
        case "Windows":
            return ReleaseAsset(f"cloudflared-windows-{cpu}.exe", False)
        case "Darwin":
            return ReleaseAsset(f"cloudflared-darwin-{cpu}.tgz", True)
    raise ValueError(f"no cloudflared release for {system}")


def release_url(base: str, version: str, asset: ReleaseAsset) -> str:
    return f"{base.rstrip('/')}/{version}/{asset.name}"


def token_key(name: str) -> str:
    """The keyring entry holding a named tunnel's token."""
    return f"tunnel:{name}"
