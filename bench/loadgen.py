"""The load generator's HTTP client: one keep-alive HTTP/1.1 connection on asyncio streams, a cookie jar of
name → value, and nothing else (no redirects, no TLS, no pooling).

It exists because the load generator shares a CPU with the portal in a pinned run: httpx spent about 1 ms of
CPU per request, which is CPU the portal then does not get. This client spends a fraction of that, so the
portal's figures depend less on what drives it (the JSON's "loadgen" CPU says how much it still costs).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit


class HTTPError(Exception):
    """The connection failed or the answer was not HTTP/1.1 as expected."""


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    set_cookies: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def parse_head(head: bytes) -> tuple[int, dict[str, str], list[str]]:
    """Status line and headers of one answer (``head`` without its final blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HTTPError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HTTPError(f"malformed header line: {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            cookies.append(value)
        headers[name] = value
    return int(parts[1]), headers, cookies


def cookie_pair(set_cookie: str) -> tuple[str, str]:
    """("sessionid", "abc") from "sessionid=abc; HttpOnly; Path=/"."""
    name, _, value = set_cookie.split(";", 1)[0].partition("=")
    return name.strip(), value.strip().strip('"')


class Client:
    """``await client.get(path)`` / ``await client.post(path, data={...}, headers={...})`` over one connection,
    opened on first use and again after the server closed it. Requests on one client are sequential."""

    def __init__(self, base_url: str, *, timeout: float = 30):
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"an http:// URL is needed, not {base_url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.authority = f"{self.host}:{self.port}".encode()
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> Response:
        return await self.request("GET", path, headers=headers)

    async def post(self, path: str, *, data: dict[str, str], headers: dict[str, str] | None = None) -> Response:
        return await self.request("POST", path, body=urlencode(data).encode(), headers=headers,
                                  content_type="application/x-www-form-urlencoded")

    async def request(self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
                      content_type: str = "") -> Response:
        try:
            return await asyncio.wait_for(self._exchange(method, path, body, headers or {}, content_type),
                                          self.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.aclose()
            raise HTTPError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except HTTPError:
            await self.aclose()
            raise

    async def _exchange(self, method: str, path: str, body: bytes, headers: dict[str, str],
                        content_type: str) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self.authority]
        if body or method == "POST":
            lines.append(b"Content-Length: " + str(len(body)).encode())
        if content_type:
            lines.append(b"Content-Type: " + content_type.encode())
        if self.cookies and "cookie" not in {name.lower() for name in headers}:
            lines.append(b"Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode())
        lines += [f"{name}: {value}".encode() for name, value in headers.items()]
        self._writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        head = (await self._reader.readuntil(b"\r\n\r\n"))[:-4]
        status, response_headers, set_cookies = parse_head(head)
        content = await self._body(response_headers, method)
        for item in set_cookies:
            name, value = cookie_pair(item)
            if value:
                self.cookies[name] = value
            else:  # an expired cookie (Django's delete_cookie) sets it empty
                self.cookies.pop(name, None)
        if response_headers.get("connection", "").lower() == "close":
            await self.aclose()
        return Response(status, response_headers, content, set_cookies)

    async def _body(self, headers: dict[str, str], method: str) -> bytes:
        assert self._reader is not None
        if method == "HEAD":
            return b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size_line = await self._reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")  # no trailers are expected
                    return b"".join(chunks)
                chunks.append(await self._reader.readexactly(size))
                await self._reader.readexactly(2)
        length = headers.get("content-length")
        if length is None:
            raise HTTPError("an answer without Content-Length or chunked encoding")
        return await self._reader.readexactly(int(length))

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
