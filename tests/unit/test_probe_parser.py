"""The probe's HTTP reading, property-based: whatever bytes a peer sends, in whatever pieces,
a probe gets exactly one outcome: the answers, or 'not HTTP' (never an exception of its own)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.health import Failure
from app.services.comfy_client import NOT_HTTP, classify
from app.services.probe_http import BadHttp, Disconnected, Outcome, _Connection


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def feed(pieces: list[bytes], expected: int = 1, close: bool = True) -> list[Outcome]:
    """Answers to `expected` GETs, fed in `pieces`, then (optionally) the peer closing."""
    connection = _Connection()
    connection.connection_made(FakeTransport())  # type: ignore[arg-type]
    outcomes: list[Outcome] = []
    connection.expect(expected, outcomes.append)
    for piece in pieces:
        connection.data_received(piece)
    if close:
        connection.connection_lost(None)
    return outcomes


def pieces_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


def answer(status: int, body: bytes, chunks: list[int] | None, close: bool) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
    head += "Connection: close\r\n" if close else ""
    if chunks is None:
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    framed = b""
    for part in pieces_of(body, chunks):
        framed += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + framed + b"0\r\n\r\n"


statuses = st.integers(200, 599).filter(lambda s: s not in (204, 304))
bodies = st.binary(max_size=300)
cuts = st.lists(st.integers(0, 10_000), max_size=8)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    statuses,
    bodies,
    st.none() | st.lists(st.integers(0, 300), max_size=5),
    st.booleans(),
    cuts,
)
def test_good_answers_in_any_pieces(
    status: int, body: bytes, chunks: list[int] | None, close: bool, split: list[int]
) -> None:
    data = answer(status, body, chunks, close)
    assert feed(pieces_of(data, split)) == [[(status, body)]]


@settings(max_examples=100)
@given(st.lists(st.tuples(statuses, bodies), min_size=2, max_size=3), cuts)
def test_pipelined_answers_arrive_together_in_order(
    answers: list[tuple[int, bytes]], split: list[int]
) -> None:
    data = b"".join(answer(s, b, None, False) for s, b in answers)
    assert feed(pieces_of(data, split), expected=len(answers), close=False) == [answers]


def _not_http(outcomes: list[Outcome]) -> None:
    assert len(outcomes) == 1, outcomes
    (outcome,) = outcomes
    assert isinstance(outcome, BadHttp | Disconnected), outcome
    error = classify(outcome)
    assert (error.failure, error.detail) == (Failure.NOT_COMFYUI, NOT_HTTP)


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=400).filter(lambda b: not b.startswith(b"H")), cuts)
def test_garbage_is_not_http(data: bytes, split: list[int]) -> None:
    _not_http(feed(pieces_of(data, split)))


@settings(max_examples=200)
@given(statuses, bodies.filter(bool), st.booleans(), st.integers(1, 10_000), cuts)
def test_a_peer_that_closes_early_is_not_http(
    status: int, body: bytes, chunked: bool, where: int, split: list[int]
) -> None:
    whole = answer(status, body, [len(body) // 2] if chunked else None, False)
    truncated = whole[: where % len(whole)]  # a head or body cut anywhere
    _not_http(feed(pieces_of(truncated, split)))


@settings(max_examples=100)
@given(
    st.sampled_from(
        [
            b"Content-Length: -5\r\n",
            b"Content-Length: 99999999999999999999\r\n",
            b"Content-Length: 12abc\r\n",
            b"Content-Length: 2\r\nContent-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n",
            b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcdXX0\r\n",
            b"Content-Length: 17000000\r\n",
        ]
    ),
    cuts,
)
def test_bad_framing_is_not_http(header: bytes, split: list[int]) -> None:
    data = b"HTTP/1.1 200 OK\r\n" + header
    data += b"" if b"\r\n\r\n" in header else b"\r\n" + b"x" * 64
    _not_http(feed(pieces_of(data, split)))


def test_a_huge_body_is_refused_before_it_is_all_read() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
    outcomes = feed([head, *([chunk] * 17)], close=False)
    _not_http(outcomes)
