"""The local API's HTTP server: zerotier-cli's exact requests, every error as JSON, limits."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from oneservice import httpserver
from oneservice.httpserver import HttpError, HttpServer, Router, parse_head

REQUESTS = Path(__file__).parent.parent / "fixtures" / "zerotier-cli-requests.txt"


def zerotier_cli_requests() -> list[tuple[str, bytes]]:
    """(command, exact bytes) from the capture: head lines end in CRLF, the body is the line
    after the blank one (the capture file ends each block with a newline of its own)."""
    blocks, name, lines = [], None, []
    for line in REQUESTS.read_bytes().split(b"\n"):
        if line.startswith(b"=== "):
            if name is not None:
                blocks.append((name, lines))
            name, lines = line[4:].decode(), []
        elif name is not None:
            lines.append(line)
    blocks.append((name, lines))
    requests = []
    for name, lines in blocks:
        blank = lines.index(b"\r")
        head = b"\n".join(lines[: blank + 1]) + b"\n"
        body = b"\n".join(lines[blank + 1 :]).rstrip(b"\n")
        requests.append((name, head + body))
    return requests


def with_host(request: bytes) -> bytes:
    line, _, rest = request.partition(b"\r\n")
    return line + b"\r\nHost: 127.0.0.1:9993\r\n" + rest


def test_the_capture_is_read_as_sent():
    requests = dict(zerotier_cli_requests())
    assert len(requests) == 5
    info = requests["zerotier-cli info"]
    assert info == b"GET /status HTTP/1.1\r\nX-ZT1-Auth: secrettoken\r\n\r\n"
    set_request = requests["zerotier-cli set <nwid> allowDefault=1"]
    assert set_request.endswith(b"\r\n\r\n" + b'{"allowDefault":true}')
    assert b"Host" not in b"".join(requests.values())


class Echo:
    """A router that answers what it was asked, so two requests can be compared."""

    def __init__(self) -> None:
        self.router = Router()
        for method in ("GET", "POST", "DELETE"):
            for pattern in ("/status", "/peer", "/network/{nwid}"):
                self.router.add(method, pattern, self.echo)

    async def echo(self, request):
        return {"method": request.method, "path": request.path, "params": request.params,
                "token": request.header("X-ZT1-Auth"),
                "body": json.loads(request.body) if request.body else None}  # fmt: skip


def refuse_wrong_token(request):
    if request.header("X-ZT1-Auth") != "secrettoken":
        return HttpError(401, "missing or wrong token")
    return None


async def serve(router: Router, guard=refuse_wrong_token) -> tuple[HttpServer, int]:
    server = HttpServer(router, guard)
    await server.listen("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


async def exchange(port: int, data: bytes) -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))  # fmt: skip
    body = await reader.readexactly(length)
    writer.close()
    status = int(head.split(b" ")[1])
    return status, json.loads(body), head


def test_zerotier_cli_requests_get_the_same_answer_as_with_a_host_header():
    async def main():
        server, port = await serve(Echo().router)
        try:
            for name, request in zerotier_cli_requests():
                bare = await exchange(port, request)
                hosted = await exchange(port, with_host(request))
                assert bare[0] == 200, (name, bare)
                assert bare[:2] == hosted[:2], name
            # All other checks unchanged: a wrong token is still refused without a Host.
            wrong = zerotier_cli_requests()[0][1].replace(b"secrettoken", b"guess")
            status, body, _ = await exchange(port, wrong)
            assert (status, body) == (401, {"error": "missing or wrong token"})
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"GET /nothing HTTP/1.1\r\nX-ZT1-Auth: secrettoken\r\n\r\n", 404, "no such path /nothing"),
        (b"PUT /status HTTP/1.1\r\nX-ZT1-Auth: secrettoken\r\n\r\n", 405, "allowed: DELETE, GET"),
        (b"GET /status HTTP/2.0\r\n\r\n", 505, "use HTTP/1.1"),
        (b"GET status HTTP/1.1\r\n\r\n", 400, "must be a path"),
        (b"NONSENSE\r\n\r\n", 400, "malformed request line"),
        (b"GET /status HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header line"),
        (b"POST /status HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "Content-Length must be"),
        (b"POST /status HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413, "over the limit"),
        (b"POST /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "Content-Length"),
        (b"GET /status HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "twice"),
        (b"GET /status HTTP/1.1\r\nX-ZT1-Auth: \xff\xfe\r\n\r\n", 401, "wrong token"),
        (b"GET /status HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431, "over 16384 bytes"),
    ],
)
def test_every_refusal_is_json_with_a_reason(request_bytes, status, reason):
    async def main():
        server, port = await serve(Echo().router)
        try:
            return await exchange(port, request_bytes)
        finally:
            await server.close()

    got_status, body, head = asyncio.run(main())
    assert got_status == status
    assert reason in body["error"]
    assert b"Content-Type: application/json" in head


def test_a_405_names_the_allowed_methods_in_a_header_too():
    async def main():
        server, port = await serve(Echo().router)
        try:
            return await exchange(port, b"PATCH /peer HTTP/1.1\r\nX-ZT1-Auth: secrettoken\r\n\r\n")
        finally:
            await server.close()

    status, _, head = asyncio.run(main())
    assert status == 405 and b"Allow: DELETE, GET, POST" in head


def test_kept_alive_connections_serve_several_requests_and_bare_lf_is_accepted():
    async def main():
        server, port = await serve(Echo().router)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for path in (b"/status", b"/peer"):
                writer.write(b"GET " + path + b" HTTP/1.1\nX-ZT1-Auth: secrettoken\n\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
                assert body["path"] == path.decode()
            writer.close()
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.parametrize("sent", [b"", b"GET /status HTTP/1.1\r\nX-ZT1-"],
                         ids=["nothing", "half a request"])  # fmt: skip
def test_connections_that_only_wait_cannot_keep_a_client_out(monkeypatch, sent):
    monkeypatch.setattr(httpserver, "MAX_CONNECTIONS", 8)

    async def main():
        server, port = await serve(Echo().router)
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        for _, writer in idle:
            writer.write(sent)  # and never the rest
        try:
            await asyncio.sleep(0.1)
            status, body, _ = await asyncio.wait_for(
                exchange(port, b"GET /status HTTP/1.1\r\nX-ZT1-Auth: secrettoken\r\n\r\n"), 1.0
            )
            assert status == 200 and body["path"] == "/status"
            assert len(server._connections) <= 8
            if not sent and hasattr(socket, "TCP_DEFER_ACCEPT"):  # Linux: they never reach us
                assert server.evicted_connections == 0
            else:
                assert server.evicted_connections >= 22
        finally:
            for _, writer in idle:
                writer.close()
            await server.close()

    asyncio.run(main())


def test_a_failing_handler_is_a_json_500_and_the_server_goes_on():
    async def broken(request):
        raise RuntimeError("bug")

    router = Router()
    router.add("GET", "/status", broken)
    router.add("GET", "/peer", Echo().echo)

    async def main():
        server, port = await serve(router)
        try:
            first = await exchange(port, b"GET /status HTTP/1.1\r\nX-ZT1-Auth: secrettoken\r\n\r\n")
            second = await exchange(port, b"GET /peer HTTP/1.1\r\nX-ZT1-Auth: secrettoken\r\n\r\n")
            return first, second
        finally:
            await server.close()

    first, second = asyncio.run(main())
    assert first[:2] == (500, {"error": "internal error (logged by the service)"})
    assert second[0] == 200


def test_parse_head_reads_the_path_query_and_headers():
    head = parse_head(b"POST /network/8056c2e21c000001?x=1 HTTP/1.1\r\nContent-Length: 2\r\n"
                      b"X-ZT1-Auth: t\r\n\r\n")  # fmt: skip
    assert (head.method, head.path, head.query) == ("POST", "/network/8056c2e21c000001", "x=1")
    assert head.content_length == 2 and head.headers["x-zt1-auth"] == "t" and head.keep_alive
    assert not parse_head(b"GET / HTTP/1.0\r\n\r\n").keep_alive
    assert not parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive
