"""A small HTTP/1.1 server for the local JSON API.

Why our own: ZeroTier's clients (zerotier-cli above all) send HTTP/1.1 without a Host header,
which general-purpose servers refuse before any handler runs; a local API also wants every
error in one JSON shape, a cap on connections and read deadlines, and nothing else. It speaks
just what the API needs: one request per round trip, bodies by Content-Length, keep-alive.

``parse_head`` is pure (bytes in, a RequestHead or an HttpError out); ``HttpServer`` is the
asyncio adapter. Handlers return a JSON-able document or raise HttpError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .records import record

log = logging.getLogger(__name__)

# A request head (request line and headers) beyond this is refused: no client of ours needs it.
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADER_LINES = 100
MAX_BODY_BYTES = 64 * 1024
# How long a client may take to send a head or a body, and to start its next request on a
# kept-alive connection. Generous for people typing into `nc`, short against idle hoarding.
READ_TIMEOUT_S = 10.0
# Connections open at once. A newcomer beyond it takes the place of the oldest connection that
# only waits: one that sent part of a request head and nothing for STALLED_S, or nothing at
# all for IDLE_S (or nothing after its last answer); a whole head waiting to be read is never
# taken for waiting. IDLE_S leaves a loaded client time to send what it connected for. So a
# local user holding connections open can neither starve the node of file descriptors nor keep
# a legitimate client out for long.
# When none is such (a burst of real clients, whose requests are on their way in), newcomers
# are not accepted yet: they wait their turn in the listen backlog, and are answered, not
# refused.
MAX_CONNECTIONS = 256
STALLED_S = 0.01
IDLE_S = 1.0
LISTEN_BACKLOG = 4096

REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    411: "Length Required", 413: "Content Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}  # fmt: skip
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class HttpError(Exception):
    """Answered as ``{"error": message}`` with this status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@record
class RequestHead:
    method: str
    path: str  # percent-decoded, without the query
    query: str
    version: str  # "HTTP/1.0" or "HTTP/1.1"
    headers: dict[str, str]  # names lowercased
    content_length: int

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


@dataclass
class Request:
    head: RequestHead
    body: bytes
    remote: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.head.method

    @property
    def path(self) -> str:
        return self.head.path

    def header(self, name: str, default: str = "") -> str:
        return self.head.headers.get(name.lower(), default)


def parse_head(data: bytes) -> RequestHead:
    """Parse a request line and headers (lines end in CRLF or LF; the blank line may be
    missing). A Host header is not required: zerotier-cli sends none."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "request head is not text") from None
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise HttpError(400, "empty request")
    if len(lines) > MAX_HEADER_LINES + 1:
        raise HttpError(431, f"more than {MAX_HEADER_LINES} header lines")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]):
        raise HttpError(400, f"malformed request line {json.dumps(lines[0][:80])}: "
                             "expected 'METHOD /path HTTP/1.1'")  # fmt: skip
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, f"{json.dumps(version[:20])} is not supported: use HTTP/1.1")
    if not target.startswith("/"):
        raise HttpError(400, f"request target must be a path starting with '/', got "
                             f"{json.dumps(target[:80])}")  # fmt: skip
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name):
            raise HttpError(400, f"malformed header line {json.dumps(line[:80])}")
        name, value = name.lower(), value.strip(" \t")
        if name in headers and name in ("content-length", "transfer-encoding", "host"):
            raise HttpError(400, f"header {name} sent twice")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "transfer-encoding" in headers:
        raise HttpError(501, "Transfer-Encoding is not supported: send the body with "
                             "Content-Length")  # fmt: skip
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or len(length_text) > 12:
        raise HttpError(400, f"Content-Length must be a number, got {json.dumps(length_text[:20])}")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise HttpError(413, f"body of {length} bytes is over the limit of {MAX_BODY_BYTES}")
    return RequestHead(method, unquote(path), query, version, headers, length)


@record
class Text:
    """A handler's answer that is not JSON (Prometheus's text format)."""

    body: str
    content_type: str


def render_response(
    status: int, document: Any, keep_alive: bool, headers: dict[str, str] | None = None
) -> bytes:
    if isinstance(document, Text):
        body, content_type = document.body.encode(), document.content_type
    else:
        body = json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
        content_type = "application/json"
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


Handler = Callable[[Request], Awaitable[Any]]


class Router:
    """Paths with ``{name}`` segments; an unknown path is a 404, a known path with another
    method a 405 naming the allowed ones, both as JSON."""

    def __init__(self) -> None:
        self._routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        segments = tuple(pattern.strip("/").split("/"))
        for existing, methods in self._routes:
            if existing == segments:
                methods[method] = handler
                return
        self._routes.append((segments, {method: handler}))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        parts = path.strip("/").split("/")
        for segments, methods in self._routes:
            params = _match(segments, parts)
            if params is None:
                continue
            handler = methods.get(method)
            if handler is None:
                allowed = ", ".join(sorted(methods))
                raise HttpError(405, f"{method} is not allowed on {path}; allowed: {allowed}",
                                {"Allow": allowed})  # fmt: skip
            return handler, params
        raise HttpError(404, f"no such path {path}; see docs/API.md")


def _match(segments: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    if len(segments) != len(parts):
        return None
    params = {}
    for segment, part in zip(segments, parts, strict=True):
        if segment.startswith("{") and segment.endswith("}"):
            if not part:
                return None
            params[segment[1:-1]] = part
        elif segment != part:
            return None
    return params


# Checks every request before it is routed (origin, token): returns an HttpError to refuse it.
Guard = Callable[[Request], "HttpError | None"]


class _WatchedReader(asyncio.StreamReader):
    """A connection's reader that notes what arrives: when the last bytes came, and whether a
    whole request head is waiting to be read (such a connection is about to be answered, never
    one that only waits, however busy the loop is)."""

    def __init__(self, now: float) -> None:
        super().__init__(limit=MAX_HEAD_BYTES)
        self.busy = False  # a request is being answered
        self.last = now  # accepted, bytes came, or an answer left
        self.pending = 0  # bytes come since the last whole head
        self.heads_in = self.heads_read = 0
        self._tail = b""

    def feed_data(self, data: bytes) -> None:
        super().feed_data(data)
        self.last = asyncio.get_running_loop().time()
        joined = self._tail + data
        ends = joined.count(b"\r\n\r\n") + joined.count(b"\n\n")
        if ends:
            self.heads_in += ends
            self.pending = len(joined) - max(joined.rfind(b"\r\n\r\n") + 4,
                                             joined.rfind(b"\n\n") + 2)  # fmt: skip
        else:
            self.pending += len(data)
        self._tail = joined[-3:]

    def only_waits(self, now: float) -> bool:
        """Nothing to answer, and nothing more for a while: part of a head and then nothing
        for STALLED_S, or nothing at all for IDLE_S."""
        if self.busy or self.heads_in > self.heads_read:
            return False
        return now - self.last >= (STALLED_S if self.pending else IDLE_S)


class HttpServer:
    def __init__(self, router: Router, guard: Guard) -> None:
        self.router = router
        self.guard = guard
        self.sockets: list[socket.socket] = []  # listening
        self._acceptors: list[asyncio.Task] = []
        self._connections: dict[asyncio.Task, _WatchedReader] = {}  # open ones, oldest first
        self._room = asyncio.Event()  # set when a connection ends
        self.evicted_connections = 0
        self.answered: dict[int, int] = {}  # requests answered, by HTTP status

    async def listen(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # the IPv4 socket is a socket of its own
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if hasattr(socket, "TCP_DEFER_ACCEPT"):
                # Linux: a connection is handed to us once its first bytes came. One that only
                # connects takes no place here at all (the kernel holds it, then drops it).
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT,
                                    int(READ_TIMEOUT_S))  # fmt: skip
            listener.bind((host, port))
            listener.listen(LISTEN_BACKLOG)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.sockets.append(listener)
        self._acceptors.append(asyncio.create_task(self._accept(listener)))

    async def close(self) -> None:
        for acceptor in self._acceptors:
            acceptor.cancel()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._acceptors, *self._connections, return_exceptions=True)
        for listener in self.sockets:
            listener.close()
        self._acceptors.clear()
        self.sockets.clear()

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_room(loop)
            try:
                connection, _ = await loop.sock_accept(listener)
            except OSError as exc:  # e.g. out of file descriptors: try again shortly
                log.warning("local API: cannot accept a connection: %s", exc.strerror or exc)
                await asyncio.sleep(0.1)
                continue
            reader = _WatchedReader(loop.time())
            task = asyncio.create_task(self._serve(connection, reader))
            self._connections[task] = reader

    async def _wait_for_room(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until a connection may be accepted: there is room, or the oldest connection that
        only waits gives its place (it is ended)."""
        while len(self._connections) >= MAX_CONNECTIONS:
            now = loop.time()
            for task, reader in self._connections.items():
                if reader.only_waits(now):
                    self._connections.pop(task)
                    task.cancel()
                    self.evicted_connections += 1
                    return
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), STALLED_S)

    async def _serve(self, connection: socket.socket, reader: _WatchedReader) -> None:
        task = asyncio.current_task()
        assert task is not None
        writer = None
        try:
            loop = asyncio.get_running_loop()
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=connection)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            peer = writer.get_extra_info("peername")
            remote = peer[0] if isinstance(peer, tuple) else ""
            while await self._one_request(reader, writer, remote, task):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # never lets a connection take the node down
            log.exception("local API connection failed")
        finally:
            self._connections.pop(task, None)
            self._room.set()
            if writer is None:
                connection.close()
            else:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await writer.drain()
                writer.close()

    async def _one_request(
        self, reader: _WatchedReader, writer: asyncio.StreamWriter, remote: str,
        task: asyncio.Task,
    ) -> bool:
        """Serve one request; False when the connection should end."""
        try:
            try:
                head_bytes = await asyncio.wait_for(_read_head(reader), READ_TIMEOUT_S)
            except TimeoutError:
                return False  # an idle kept-alive connection, or a client that never finished
            if head_bytes is None:
                return False  # the client closed between requests
            head = parse_head(head_bytes)
            try:
                body = await asyncio.wait_for(
                    reader.readexactly(head.content_length), READ_TIMEOUT_S
                )
            except TimeoutError:
                raise HttpError(408, f"body of {head.content_length} bytes not received in "
                                     f"{READ_TIMEOUT_S:.0f} s") from None  # fmt: skip
        except HttpError as exc:
            writer.write(render_response(exc.status, {"error": str(exc)}, False, exc.headers))
            return False
        if task not in self._connections:
            return False  # evicted while its body arrived
        watched = self._connections[task]
        watched.busy = True
        watched.heads_read += 1
        request = Request(head, body, remote)
        status, document, headers = await self._dispatch(request)
        self.answered[status] = self.answered.get(status, 0) + 1
        writer.write(render_response(status, document, head.keep_alive, headers))
        await writer.drain()
        watched.busy = False
        watched.last = asyncio.get_running_loop().time()
        return head.keep_alive

    async def _dispatch(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        try:
            refusal = self.guard(request)
            if refusal is not None:
                raise refusal
            handler, request.params = self.router.resolve(request.method, request.path)
            return 200, await handler(request), {}
        except HttpError as exc:
            return exc.status, {"error": str(exc)}, exc.headers
        except Exception:
            log.exception("API %s %s failed", request.method, request.path)
            return 500, {"error": "internal error (logged by the service)"}, {}


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Bytes up to and including the blank line; None if the client closed first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if not chunks and not exc.partial:
                return None
            raise HttpError(400, "connection closed in the middle of a request head") from None
        except asyncio.LimitOverrunError:
            raise HttpError(431, f"request head over {MAX_HEAD_BYTES} bytes") from None
        if not chunks and line in (b"\r\n", b"\n"):
            continue  # tolerated between kept-alive requests (RFC 9112 section 2.2)
        chunks.append(line)
        size += len(line)
        if size > MAX_HEAD_BYTES:
            raise HttpError(431, f"request head over {MAX_HEAD_BYTES} bytes")
        if line in (b"\r\n", b"\n"):
            return b"".join(chunks)
