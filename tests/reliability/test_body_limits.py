"""Item 5: request body limits against a real collector over a real socket.

Oversized bodies, declared (Content-Length) or streamed (chunked), get 413 before the
collector reads them: a 100 MiB upload stops after the few MiB the kernel's socket buffers
hold, within milliseconds, and the collector's RSS does not move. Counted inside the server,
a declared length past the cap has no body byte read, and a streamed body is read only until
the bytes received pass the cap. Deeply nested JSON under the cap is a client error, never a
crash.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings
from tests.e2e.servers import LOOPBACK, ManagedProcess, running_collector, running_collector_thread
from tests.reliability.conftest import SCALE, MiB, record_figure, rss_bytes

PIECE = 64 * 1024
SOCKET_TIMEOUT_SECONDS = 30.0
SOCKET_BUFFERS = 16 * MiB
"""Loopback TCP buffers (receiver's plus sender's, autotuned to a few MiB each): what a
client can push before the server reads anything."""
RSS_SLACK = 8 * MiB
ANSWER_SECONDS = 2.0
HUGE = 100 * MiB
WRITE_PATHS = ("/api/metrics/http", "/api/metrics/http/batch", "/api/health/auth")


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    with running_collector(tmp_path_factory.mktemp("body-limits"), {}) as server:
        yield server


@dataclass(frozen=True)
class Upload:
    """How one oversized upload went, seen from both ends."""

    status: int | None
    """The answer's status code (``None`` if the connection died before one arrived)."""
    client_sent: int
    """Body bytes the kernel accepted from the client before the answer or the close: an
    upper bound on what the collector can have read."""
    server_rss_growth: int
    seconds: float
    answer: bytes


def _frame(piece: bytes, chunked: bool) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece


class Listening(Protocol):
    """A collector listening on loopback: ``port``, and ``pid`` of the process serving it."""

    @property
    def port(self) -> int: ...

    @property
    def pid(self) -> int: ...


def upload(server: Listening, path: str, size: int, *, chunked: bool) -> Upload:
    """POST ``size`` body bytes to ``path`` on a raw socket, stopping when an answer arrives.

    The socket is non-blocking: before each piece the client checks whether the server has
    answered, so it measures how much the server let it send before refusing.
    """
    framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % size
    head = b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n%s\r\n\r\n" % (
        path.encode(),
        LOOPBACK.encode(),
        framing,
    )
    piece = b" " * PIECE
    rss_before = rss_bytes(server.pid)
    started = time.monotonic()
    sent = 0
    answer = b""
    with socket.create_connection((LOOPBACK, server.port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        pending = b""
        deadline = started + SOCKET_TIMEOUT_SECONDS
        # A declared length past the cap is refused before the body: give the answer time
        # to arrive before sending any of it.
        answered_early = not chunked and bool(select.select([sock], [], [], 1.0)[0])
        while not answered_early and time.monotonic() < deadline:
            more = sent < size or pending
            readable, writable, _ = select.select([sock], [sock] if more else [], [], 1.0)
            if readable:
                break
            if not writable:
                continue
            if not pending:
                body = piece[: min(PIECE, size - sent)]
                last = chunked and sent + len(body) >= size
                pending = _frame(body, chunked) + (b"0\r\n\r\n" if last else b"")
                sent += len(body)
            try:
                written = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[written:]
        sent -= len(pending)  # pieces the kernel never took do not count
        sock.setblocking(True)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
    seconds = time.monotonic() - started
    status_line = answer.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 else None
    return Upload(
        status=status,
        client_sent=max(0, sent),
        server_rss_growth=rss_bytes(server.pid) - rss_before,
        seconds=seconds,
        answer=answer,
    )


def assert_alive(server: ManagedProcess) -> None:
    assert server.process.poll() is None, server.output()
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


SIZES = [
    pytest.param(1 * MiB, False, id="1MiB-content-length"),
    pytest.param(1 * MiB, True, id="1MiB-chunked"),
    pytest.param(HUGE, False, id="100MiB-content-length"),
    pytest.param(HUGE, True, id="100MiB-chunked"),
]


@pytest.mark.timeout(SCALE.test_timeout)
@pytest.mark.parametrize(("size", "chunked"), SIZES)
def test_oversized_body_is_refused_without_reading_it(
    collector: ManagedProcess, size: int, chunked: bool
) -> None:
    """A body past the cap gets 413 at once; the client cannot push more than socket buffers."""
    cap = CollectorSettings.from_env(environ={}).max_body_bytes
    result = upload(collector, "/api/metrics/http/batch", size, chunked=chunked)

    framing = "chunked" if chunked else "content-length"
    let_in = min(size, cap + SOCKET_BUFFERS)
    passed = (
        result.status == 413
        and result.client_sent <= (let_in if chunked else 0)
        and result.seconds <= ANSWER_SECONDS
        and result.server_rss_growth <= RSS_SLACK
    )
    record_figure(
        "5 body limits",
        f"{size // MiB} MiB {framing}: {result.status} after {result.seconds * 1000:.0f} ms; "
        f"the client got {result.client_sent / MiB:.2f} MiB into the socket before the answer "
        f"(so the collector read at most that), collector RSS "
        f"{result.server_rss_growth / MiB:+.1f} MiB",
        f"413 within {ANSWER_SECONDS:.0f} s; content-length: before any body byte; chunked: "
        f"<= cap {cap // 1024} KiB + {SOCKET_BUFFERS // MiB} MiB socket buffers let in; "
        f"RSS < +{RSS_SLACK // MiB} MiB",
        passed,
    )
    assert result.status == 413, result.answer[:500]
    assert b"max_body_bytes" in result.answer
    assert result.client_sent <= let_in
    if not chunked:
        assert result.client_sent == 0, "a declared length past the cap needs no body"
    assert result.seconds <= ANSWER_SECONDS
    assert result.server_rss_growth <= RSS_SLACK
    assert_alive(collector)


@dataclass
class Reads:
    """What the collector pulled from the connection: each body message's size, in order,
    and whether it pulled any after its answer started."""

    sizes: list[int] = field(default_factory=list)
    answered: bool = False
    read_after_answer: bool = False


class CountReceived:
    """Outermost ASGI middleware recording every body message the collector receives."""

    def __init__(self, app: ASGIApp, *, reads: list[Reads]) -> None:
        self.app = app
        self.reads = reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        reads = Reads()
        self.reads.append(reads)

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                reads.sizes.append(len(message.get("body", b"")))
                reads.read_after_answer |= reads.answered
            return message

        async def watched_send(message: Message) -> None:
            reads.answered |= message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, watched_send)


@dataclass(frozen=True)
class InProcess:
    """The in-process uvicorn server, shaped for :func:`upload`."""

    port: int
    pid: int


@pytest.mark.timeout(SCALE.test_timeout)
@pytest.mark.parametrize(("size", "chunked"), SIZES)
def test_oversized_body_is_read_no_further_than_the_cap(size: int, chunked: bool) -> None:
    """Counted where the collector receives them (real uvicorn, real socket): a declared
    length past the cap is refused with no body byte read; a streamed body is read until the
    bytes received pass the cap, and not one message more."""
    settings = CollectorSettings.from_env(environ={})
    cap = settings.max_body_bytes
    app = create_app(settings, registry=CollectorRegistry())
    reads: list[Reads] = []
    app.add_middleware(CountReceived, reads=reads)
    with running_collector_thread(app) as server:
        port = urlsplit(server.url).port
        assert port is not None
        result = upload(
            InProcess(port, os.getpid()), "/api/metrics/http/batch", size, chunked=chunked
        )

    assert result.status == 413, result.answer[:500]
    assert b"max_body_bytes" in result.answer
    [request] = reads
    received = sum(request.sizes)
    record_figure(
        "5 body limits",
        f"{size // MiB} MiB {'chunked' if chunked else 'content-length'}, counted inside the "
        f"server: {received:,} body bytes received in {len(request.sizes)} messages before "
        f"the 413 (cap {cap:,})",
        "content-length: no body byte; chunked: <= cap before the last message read",
        (received == 0) if not chunked else sum(request.sizes[:-1]) <= cap < received,
    )
    assert not request.read_after_answer
    if not chunked:
        assert request.sizes == [], "a declared length past the cap needs no body"
        return
    assert sum(request.sizes[:-1]) <= cap, "read on after the bytes received passed the cap"
    assert received > cap


def nested(depth: int, opening: str, closing: str, core: str = "1") -> str:
    return opening * depth + core + closing * depth


NESTED_BODIES = [
    pytest.param(nested(120_000, "[", "]"), id="array-120k-deep"),
    pytest.param(nested(40_000, '{"a":', "}"), id="object-40k-deep"),
    pytest.param(nested(100_000, "[", "]", "") + "x", id="unterminated-garbage"),
    pytest.param("[" * 250_000, id="unclosed-250k"),
    pytest.param(
        '{"method":"GET","route":"/a","status":200,"duration":' + nested(100_000, "[", "]") + "}",
        id="deep-duration",
    ),
    pytest.param('{"reports":' + nested(100_000, "[", "]") + "}", id="deep-reports"),
    pytest.param('{"status":' + nested(40_000, '{"s":', "}", '"healthy"') + "}", id="deep-status"),
]


@pytest.mark.timeout(SCALE.test_timeout)
@pytest.mark.parametrize("body", NESTED_BODIES)
def test_deeply_nested_json_under_the_cap_is_a_client_error(
    collector: ManagedProcess, body: str
) -> None:
    """JSON nested hundreds of thousands deep, within the cap, is a 4xx on every write."""
    cap = CollectorSettings.from_env(environ={}).max_body_bytes
    assert len(body.encode()) <= cap
    statuses = []
    with httpx.Client(base_url=collector.url, timeout=30) as http:
        for path in WRITE_PATHS:
            response = http.post(
                path, content=body.encode(), headers={"content-type": "application/json"}
            )
            statuses.append(response.status_code)
    record_figure(
        "5 nested JSON",
        f"{len(body) // 1024} KiB nested body on {len(WRITE_PATHS)} endpoints: {statuses}; "
        "collector alive",
        "4xx, no crash, /healthz 200",
        all(400 <= status < 500 for status in statuses) and collector.process.poll() is None,
    )
    assert all(400 <= status < 500 for status in statuses), statuses
    assert_alive(collector)
