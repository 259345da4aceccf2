"""The benchmark's HTTP client (bench/loadgen.py) against a small asyncio HTTP server: keep-alive, cookies,
both body framings, a server that closes, and a malformed answer."""

from __future__ import annotations

import asyncio

import pytest

from bench.loadgen import Client, HTTPError


class Server:
    """Answers each request with the next canned response; records the requests and the connections."""

    def __init__(self, responses: list[bytes]):
        self.responses = responses
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                response = self.responses.pop(0)
                writer.write(response)
                await writer.drain()
                if b"Connection: close" in response:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()


def answer(status: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_keeps_one_connection_and_its_cookies():
    server = Server([answer("200 OK", b"<form>", "Set-Cookie: csrftoken=abc; Path=/",
                            "Set-Cookie: sessionid=s1; HttpOnly"),
                     answer("302 Found", b"", "Location: /login/password/", "PTA-Outcome: success")])
    async with server as url, Client(url) as client:
        page = await client.get("/login/")
        done = await client.post("/login/", data={"username": "a@b.example", "csrfmiddlewaretoken": "t"})
    assert (page.status_code, page.text) == (200, "<form>")
    assert (done.status_code, done.headers["location"], done.headers["pta-outcome"]) == \
        (302, "/login/password/", "success")
    assert server.connections == 1
    second = server.requests[1].decode()
    assert second.startswith("POST /login/ HTTP/1.1\r\n")
    assert "Cookie: csrftoken=abc; sessionid=s1\r\n" in second
    assert second.endswith("\r\n\r\nusername=a%40b.example&csrfmiddlewaretoken=t")


async def test_an_expired_cookie_is_dropped_and_an_explicit_cookie_header_wins():
    server = Server([answer("200 OK", b"", "Set-Cookie: sessionid=s1"),
                     answer("200 OK", b"", 'Set-Cookie: sessionid=""; expires=Thu, 01 Jan 1970 00:00:00 GMT'),
                     answer("200 OK")])
    async with server as url, Client(url) as client:
        await client.get("/")
        assert client.cookies == {"sessionid": "s1"}
        await client.get("/")
        assert client.cookies == {}
        await client.get("/", headers={"Cookie": "sessionid=mine"})
    assert server.requests[2].count(b"Cookie:") == 1 and b"Cookie: sessionid=mine" in server.requests[2]


async def test_reads_a_chunked_body():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    server = Server([chunked, answer("204 No Content")])
    async with server as url, Client(url) as client:
        assert (await client.get("/")).body == b"hello world"
        assert (await client.get("/")).status_code == 204  # the chunked body was read to its end
    assert server.connections == 1


async def test_opens_a_new_connection_after_the_server_closed_one():
    server = Server([answer("200 OK", b"one", "Connection: close"), answer("200 OK", b"two")])
    async with server as url, Client(url) as client:
        assert (await client.get("/")).text == "one"
        assert (await client.get("/")).text == "two"
    assert server.connections == 2


async def test_a_malformed_or_missing_answer_is_an_http_error():
    server = Server([b"SMTP ready\r\n\r\n"])
    async with server as url, Client(url) as client:
        with pytest.raises(HTTPError, match="status line"):
            await client.get("/")
        with pytest.raises(HTTPError):  # the server has nothing more to say: it closed the connection
            await client.get("/")


async def test_a_silent_server_times_out():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        client = Client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=0.2)
        with pytest.raises(HTTPError, match="TimeoutError"):
            await client.get("/")
    finally:
        server.close()
        await server.wait_closed()
