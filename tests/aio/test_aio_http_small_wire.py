"""The push path's small HTTP server on the wire: pipelining, early 413, the linger after an
error answer, a failing handler, closing live connections, the idle timeout; and curl (HTTP/1.1,
HTTP/1.0, a chunked upload) as a real peer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from openscws.aio import http_small
from openscws.aio.http_small import HttpReply, HttpRequest, SmallHttpServer, post


async def echo(req: HttpRequest) -> HttpReply:
    return HttpReply(200, req.method.encode() + b" " + req.target.encode() + b" " + req.body)


async def read_answers(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """`count` answers with Content-Length bodies, as raw bytes each."""
    answers = []
    for _ in range(count):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        answers.append(head + await reader.readexactly(length))
    return answers


def test_pipelined_requests_are_answered_in_order() -> None:
    async def slow_first(req: HttpRequest) -> HttpReply:
        if req.target == "/1":
            await asyncio.sleep(0.05)
        return await echo(req)

    async def main() -> None:
        server = SmallHttpServer(slow_first)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\na"
                b"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"1\r\nb\r\n0\r\n\r\n"
                b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            async with asyncio.timeout(5):
                answers = await read_answers(reader, 3)
                assert await reader.read() == b""  # closed after the third
            assert [a.rsplit(b"\r\n\r\n", 1)[1] for a in answers] == [
                b"POST /1 a",
                b"POST /2 b",
                b"GET /3 ",
            ]
            assert b"Connection: close" in answers[2]
            writer.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_an_oversize_body_is_refused_before_it_is_sent() -> None:
    called: list[HttpRequest] = []

    async def handler(req: HttpRequest) -> HttpReply:
        called.append(req)
        return HttpReply(200)

    async def main() -> None:
        server = SmallHttpServer(handler, max_body=100)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # Only the head: the answer comes without the body.
            writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
            async with asyncio.timeout(5):
                (answer,) = await read_answers(reader, 1)
                assert answer.startswith(b"HTTP/1.1 413 ")
                assert answer.endswith(b"at most 100 bytes\n")
                assert b"Connection: close" in answer
                # The server half-closed and drops what still comes until the client leaves.
                writer.write(bytes(50000))
                assert await reader.read() == b""
            writer.close()
            assert called == []
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 17000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ],
)
def test_malformed_requests_get_the_codec_status_and_close(raw: bytes, status: int) -> None:
    async def main() -> None:
        server = SmallHttpServer(echo)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            async with asyncio.timeout(5):
                (answer,) = await read_answers(reader, 1)
                assert await reader.read() == b""
            assert answer.startswith(f"HTTP/1.1 {status} ".encode())
            assert b"\r\nConnection: close\r\n" in answer
            assert answer.endswith(b"malformed request\n")
            writer.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_a_failing_handler_gets_500_and_the_server_goes_on() -> None:
    async def handler(req: HttpRequest) -> HttpReply:
        if req.body == b"boom":
            raise RuntimeError("boom")
        return HttpReply(200, b"ok")

    async def main() -> None:
        server = SmallHttpServer(handler)
        await server.start()
        try:
            assert (await post(server.url("/"), b"boom")).status == 500
            assert (await post(server.url("/"), b"fine")).body == b"ok"
        finally:
            await server.close()

    asyncio.run(main())


def test_close_ends_live_connections_and_running_handlers() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def stuck(req: HttpRequest) -> HttpReply:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return HttpReply(200)

    async def main() -> None:
        server = SmallHttpServer(stuck)
        await server.start()
        idle = await asyncio.open_connection("127.0.0.1", server.port)
        waiting = asyncio.create_task(post(server.url("/"), b"x", timeout=10))
        async with asyncio.timeout(5):
            await started.wait()
            await server.close()
            assert server.connections == 0
            assert await idle[0].read() == b""
            with pytest.raises(OSError, match="closed before answering"):
                await waiting
        assert cancelled == [True]
        idle[1].close()

    asyncio.run(main())


def test_a_silent_connection_is_closed_after_the_idle_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_small, "IDLE_TIMEOUT", 0.2)

    async def main() -> None:
        server = SmallHttpServer(echo)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed, unanswered
                while server.connections:
                    await asyncio.sleep(0.01)
            writer.close()
        finally:
            await server.close()

    asyncio.run(main())


# -- curl --------------------------------------------------------------------------------


async def curl(curl_path: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        curl_path,
        "-sS",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return await proc.wait(), out.decode("latin-1")


@pytest.mark.peer
def test_curl_talks_to_the_server(need_tool: Callable[[str, str], str], tmp_path: Path) -> None:
    curl_path = need_tool("curl", "curl")
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 20)  # 5120 bytes: several chunks from curl
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(9000))
    seen: list[HttpRequest] = []

    async def handler(req: HttpRequest) -> HttpReply:
        seen.append(req)
        return HttpReply(200, b"%d\n" % len(req.body), (("X-Sum", str(sum(req.body))),))

    async def main() -> None:
        server = SmallHttpServer(handler, max_body=8192)
        await server.start()
        url = server.url("/up")
        try:
            rc, out = await curl(curl_path, "-i", "--data-binary", f"@{upload}", url)
            assert rc == 0, out
            assert out.startswith("HTTP/1.1 200 OK\r\n")
            assert out.endswith("\r\n\r\n5120\n")
            assert f"X-Sum: {sum(upload.read_bytes())}\r\n" in out

            rc, out = await curl(curl_path, "-i", "--http1.0", "--data-binary", f"@{upload}", url)
            assert rc == 0, out
            assert "\r\nConnection: close\r\n" in out
            assert out.endswith("\r\n\r\n5120\n")
            assert seen[-1].header("content-length") == "5120"

            rc, out = await curl(
                curl_path,
                "-i",
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                f"@{upload}",
                url,
            )
            assert rc == 0, out
            assert out.endswith("\r\n\r\n5120\n")
            assert seen[-1].header("transfer-encoding") == "chunked"
            assert seen[-1].body == upload.read_bytes()

            for framing in ((), ("-H", "Transfer-Encoding: chunked")):
                rc, out = await curl(curl_path, "-i", *framing, "--data-binary", f"@{big}", url)
                assert rc == 0, out
                assert out.startswith("HTTP/1.1 413 ")
                assert out.endswith("at most 8192 bytes\n")

            # Two requests, one connection (HTTP/1.1 keep-alive; HTTP/1.0 asking for it).
            for version in ("--http1.1", "--http1.0"):
                once = [version, "-H", "Connection: keep-alive", "-w", "[%{num_connects}]"]
                rc, out = await curl(
                    curl_path, *once, "-d", "a", url, "--next", *once, "-d", "b", url
                )
                assert rc == 0, out
                assert out == "1\n[1]1\n[0]", version
            assert len(seen) == 7
        finally:
            await server.close()

    asyncio.run(main())


def test_post_without_a_pool_says_connection_close() -> None:
    seen: list[HttpRequest] = []

    async def handler(req: HttpRequest) -> HttpReply:
        seen.append(req)
        return HttpReply(200)

    async def main() -> None:
        server = SmallHttpServer(handler)
        await server.start()
        try:
            answer = await post(server.url("/"), b"x", (("connection", "keep-alive"),))
            assert ("connection", "close") in answer.headers
            assert [r.header("connection") for r in seen] == ["close"]
            async with asyncio.timeout(5):
                while server.connections:
                    await asyncio.sleep(0.01)
        finally:
            await server.close()

    asyncio.run(main())
