"""`openscws dev --reload`'s front: requests pass to the gateway unchanged, HTML pages get
the reload script tag on the way back (only there), and the events stream tells each new
version of the site."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from openscws.aio.devserver import RELOAD_SCRIPT, SNIPPET, ReloadFront, inject_snippet

PAGE = b"<!DOCTYPE html><html><body><h1>hi</h1></BODY ></html>"


def test_inject_before_the_last_body_end() -> None:
    assert inject_snippet(PAGE) == (
        b"<!DOCTYPE html><html><body><h1>hi</h1>" + SNIPPET + b"</BODY ></html>"
    )
    assert inject_snippet(b"<p>no body tag") == b"<p>no body tag" + SNIPPET


async def _upstream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[bytes]
) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    seen.append(head + body)
    target = head.split(b" ")[1]
    headers = b""
    if target == b"/page":
        ctype, data = b"text/html; charset=utf-8", PAGE
    elif target == b"/gz":
        ctype, data = b"text/html", b"\x1f\x8bnot really"
        headers = b"Content-Encoding: gzip\r\n"
    elif target == b"/echo":
        ctype, data = b"text/plain", body
    else:
        ctype, data = b"text/plain", b"plain </body> text"
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + ctype
        + b"\r\n"
        + headers
        + b'ETag: "abc"\r\nContent-Length: '
        + str(len(data)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + data
    )
    await writer.drain()
    writer.close()


def run_front(test: Callable[[ReloadFront, list[bytes]], Awaitable[None]]) -> None:
    async def main() -> None:
        seen: list[bytes] = []
        upstream = await asyncio.start_server(lambda r, w: _upstream(r, w, seen), "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        front = ReloadFront("127.0.0.1", 0, lambda: ("127.0.0.1", port))
        await front.start()
        try:
            await asyncio.wait_for(test(front, seen), 20)
        finally:
            await front.stop()
            upstream.close()
            await upstream.wait_closed()

    asyncio.run(main())


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    return lines[0], headers, await reader.readexactly(length)


def test_html_gets_the_snippet_other_answers_do_not() -> None:
    async def test(front: ReloadFront, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        # Keep-alive: four requests on one connection to the front.
        for target in (b"/page", b"/plain", b"/gz"):
            writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert headers[b"etag"] == b'"abc"'
            if target == b"/page":
                assert body == inject_snippet(PAGE)
                assert headers[b"content-length"] == str(len(body)).encode()
            elif target == b"/plain":
                assert body == b"plain </body> text"
            else:
                assert SNIPPET not in body
        writer.write(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
        status, _, body = await read_response(reader)
        assert body == b"hello"
        writer.close()
        await writer.wait_closed()
        # The gateway got the requests as sent (Host kept), one connection each.
        assert seen[0].startswith(b"GET /page HTTP/1.1\r\n")
        assert b"host: 127.0.0.1\r\n" in seen[0].lower()
        assert seen[3].endswith(b"\r\n\r\nhello")

    run_front(test)


def test_the_script_and_the_events_stream() -> None:
    async def test(front: ReloadFront, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        writer.write(b"GET /.openscws-dev/reload.js HTTP/1.1\r\nHost: h\r\n\r\n")
        _, headers, body = await read_response(reader)
        assert body == RELOAD_SCRIPT
        assert headers[b"content-type"].startswith(b"text/javascript")
        writer.write(b"GET /.openscws-dev/events HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"text/event-stream" in head
        first = await reader.readuntil(b"\n\n")
        assert f"data: {front.version}".encode() in first
        front.changed()
        second = await reader.readuntil(b"\n\n")
        assert f"data: {front.version}".encode() in second
        assert first != second
        assert seen == []  # none of it reached the card
        writer.close()
        await writer.wait_closed()

    run_front(test)


def test_a_gateway_that_is_gone_is_a_502() -> None:
    async def main() -> None:
        front = ReloadFront("127.0.0.1", 0, lambda: ("127.0.0.1", 1))
        await front.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            status, _, body = await read_response(reader)
            assert status.startswith(b"HTTP/1.1 502")
            assert b"not reachable" in body
            writer.close()
            await writer.wait_closed()
        finally:
            await front.stop()

    asyncio.run(main())


def test_head_keeps_the_cards_length() -> None:
    async def test(front: ReloadFront, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        writer.write(b"HEAD /plain HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"content-length: 18" in head.lower()
        writer.write(b"GET /plain HTTP/1.1\r\nHost: h\r\n\r\n")  # no body came in between
        _, _, body = await read_response(reader)
        assert body == b"plain </body> text"
        writer.close()
        await writer.wait_closed()

    run_front(test)
