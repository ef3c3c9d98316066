"""A stand-in `cloudflared` that behaves like the real one (REFERENCE §3), for tests.

It prints cloudflared's log lines on stderr, serves its own metrics with /quicktunnel (at
once) and /ready (503 until connected, then 200), honours --grace-period on SIGTERM and exits
at once on a second signal. STANDIN_MODE picks a failure: no-network, rate-limited,
udp-blocked, exit. STANDIN_READY_S sets the time to the first connection (default 0.3 s).
"""

import http.server
import json
import os
import random
import signal
import string
import sys
import threading
import time
from datetime import UTC, datetime


def log(level, message):
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} {level} {message}", file=sys.stderr, flush=True)


def option(argv, name, default=None):
    return argv[argv.index(name) + 1] if name in argv else default


FAILURES = {
    "no-network": [
        'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel":'
        " dial tcp: lookup api.trycloudflare.com: no such host"
    ],
    "rate-limited": [
        "Error unmarshaling QuickTunnel response: error code: 1015",
        "failed to unmarshal quick Tunnel: 429 Too Many Requests",
    ],
    "exit": ["Cannot determine default origin certificate path."],
}


def main(argv):
    mode = os.environ.get("STANDIN_MODE", "ok")
    ready_after = float(os.environ.get("STANDIN_READY_S", "0.3"))
    metrics = option(argv, "--metrics", "127.0.0.1:20241")
    grace = float(option(argv, "--grace-period", "30s").rstrip("s"))
    named = "run" in argv
    with open(os.environ.get("STANDIN_RECORD", os.devnull), "w") as record:
        json.dump({"argv": argv, "token_in_env": bool(os.environ.get("TUNNEL_TOKEN"))}, record)
    log("INF", "Thank you for trying Cloudflare Tunnel.")
    if mode in FAILURES:
        for line in FAILURES[mode]:
            log("ERR", line)
        return 1
    if named and not os.environ.get("TUNNEL_TOKEN"):
        log("ERR", '"cloudflared tunnel run" requires the ID or name of the tunnel to run')
        return 1
    hostname = "".join(random.choices(string.ascii_lowercase, k=6)) + "-standin.trycloudflare.com"
    started = time.monotonic()
    state = {"connected": False}

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/quicktunnel" and not named:
                body = {"hostname": hostname}
                status = 200
            elif self.path == "/ready":
                status = 200 if state["connected"] else 503
                body = {
                    "status": status,
                    "readyConnections": int(state["connected"]),
                    "connectorId": "5b7a0d36-standin",
                }
            else:
                status, body = 404, {}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    host, port = metrics.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((host, int(port)), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log("INF", f"Starting metrics server on {host}:{port}/metrics")
    if not named:
        log("INF", "Requesting new quick Tunnel on trycloudflare.com...")
        log(
            "INF",
            "+--------------------------------------------------------------------------------------------+",
        )
        log(
            "INF",
            "|  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |",
        )
        log("INF", f"|  https://{hostname}  |")
        log(
            "INF",
            "+--------------------------------------------------------------------------------------------+",
        )
    if mode == "udp-blocked":
        time.sleep(0.2)
        log(
            "ERR",
            'Failed to dial a quic connection error="failed to dial to edge with quic: '
            'timeout: no recent network activity"',
        )
        log("ERR", "egress UDP to port 7844 may be blocked")
        return 1
    stop = threading.Event()
    signals = []

    def on_signal(number, frame):
        signals.append(number)
        if len(signals) > 1:
            os._exit(1)
        log(
            "INF",
            f"Initiating graceful shutdown due to signal {signal.Signals(number).name.lower()} ...",
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.is_set():
        if not state["connected"] and time.monotonic() - started >= ready_after:
            state["connected"] = True
            log("INF", "Registered tunnel connection connIndex=0 location=ams01 protocol=quic")
        stop.wait(0.02)
    time.sleep(min(grace, 0.2))  # no requests in flight: the grace period ends early
    log("INF", "Tunnel server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
