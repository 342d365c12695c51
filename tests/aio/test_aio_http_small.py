"""The push path's small HTTP server and client (openscws.aio.http_small): the guards of a
local endpoint and the asyncio POST that hands a push on without a thread."""

from __future__ import annotations

import asyncio

import pytest

from openscws.aio.http_small import (
    MAX_CONNECTIONS,
    ConnectionPool,
    HttpReply,
    HttpRequest,
    SmallHttpServer,
    is_loopback,
    post,
)


def test_post_gets_the_answer() -> None:
    seen: list[HttpRequest] = []

    async def handler(req: HttpRequest) -> HttpReply:
        seen.append(req)
        return HttpReply(201, req.body[::-1], (("X-Echo", req.header("x-in") or ""),))

    async def main() -> None:
        server = SmallHttpServer(handler)
        await server.start()
        try:
            answer = await post(server.url("/p?q=1"), b"abc", (("X-In", "here"),))
            assert (answer.status, answer.body) == (201, b"cba")
            assert ("x-echo", "here") in answer.headers
            (req,) = seen
            assert (req.method, req.target, req.body) == ("POST", "/p?q=1", b"abc")
            big = await post(server.url("/p"), bytes(70000))
            assert big.status == 413
        finally:
            await server.close()

    asyncio.run(main())


def test_post_without_a_server_or_in_time() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):  # never answers; ends when the client gives up
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        try:
            with pytest.raises(TimeoutError):
                await post(f"http://127.0.0.1:{port}/", b"x", timeout=0.3)
        finally:
            server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await post(f"http://127.0.0.1:{port}/", b"x", timeout=2)
        with pytest.raises(OSError, match="http://"):
            await post("ftp://127.0.0.1/", b"x")

    asyncio.run(main())


def test_many_nested_hops_need_no_threads() -> None:
    """Forty POSTs at once, each handled by a POST to a second server: nothing waits for a
    thread (the default executor of a 2-CPU machine has 6)."""

    async def inner(req: HttpRequest) -> HttpReply:
        await asyncio.sleep(0.05)
        return HttpReply(200, req.body)

    async def main() -> None:
        back = SmallHttpServer(inner)
        await back.start()

        async def outer(req: HttpRequest) -> HttpReply:
            answer = await post(back.url("/"), req.body)
            return HttpReply(answer.status, answer.body)

        front = SmallHttpServer(outer)
        await front.start()
        try:
            async with asyncio.timeout(20):
                answers = await asyncio.gather(
                    *(post(front.url("/"), str(i).encode()) for i in range(40))
                )
            assert [a.body for a in answers] == [str(i).encode() for i in range(40)]
        finally:
            await front.close()
            await back.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("peer", "local"),
    [("127.0.0.1", True), ("::1", True), ("fe80::1%lo", False), ("::1%lo", True), ("x", False)],
)
def test_is_loopback(peer: str, local: bool) -> None:
    assert is_loopback(peer) is local


def test_loopback_only_and_connection_cap() -> None:
    async def handler(req: HttpRequest) -> HttpReply:
        return HttpReply(200, b"ok")

    async def main() -> None:
        server = SmallHttpServer(handler, max_connections=1, loopback_only=True)
        await server.start()
        try:
            held = await asyncio.open_connection("127.0.0.1", server.port)
            async with asyncio.timeout(5):
                while server.connections < 1:
                    await asyncio.sleep(0.01)
            answer = await post(server.url("/"), b"")
            assert answer.status == 503
            assert ("retry-after", "1") in answer.headers
            assert server.refused == 1
            held[1].close()
            async with asyncio.timeout(5):
                while server.connections:
                    await asyncio.sleep(0.01)
            assert (await post(server.url("/"), b"")).status == 200
        finally:
            await server.close()

    asyncio.run(main())
    # every server has a limit unless it asks for none
    assert SmallHttpServer(handler).max_connections == MAX_CONNECTIONS
    assert SmallHttpServer(handler, max_connections=None).max_connections is None


def test_pooled_posts_keep_the_connection_alive() -> None:
    async def handler(req: HttpRequest) -> HttpReply:
        return HttpReply(200, req.body.upper())

    async def main() -> None:
        server = SmallHttpServer(handler)
        await server.start()
        pool = ConnectionPool()
        try:
            for word in (b"one", b"two", b"three"):
                answer = await post(server.url("/p"), word, pool=pool)
                assert (answer.status, answer.body) == (200, word.upper())
            assert pool.opened == 1  # the three went over one connection
            assert server.connections == 1
            # An error answer says Connection: close: that connection is not kept.
            bad = await post(server.url("/p"), bytes(70000), pool=pool)
            assert bad.status == 413
            again = await post(server.url("/p"), b"four", pool=pool)
            assert again.body == b"FOUR"
            assert pool.opened == 2
        finally:
            await pool.close()
            await server.close()

    asyncio.run(main())


def test_pooled_post_replaces_a_connection_the_server_closed() -> None:
    served: list[bytes] = []

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers one request, keep-alive, then closes the idle connection.
        data = await reader.readuntil(b"\r\n\r\n")
        length = int(data.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        served.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool()
        try:
            first = await post(f"http://127.0.0.1:{port}/p", b"a", pool=pool)
            await asyncio.sleep(0.05)  # the server's close reaches the kept connection
            second = await post(f"http://127.0.0.1:{port}/p", b"b", pool=pool)
            assert (first.body, second.body) == (b"ok", b"ok")
            assert served == [b"a", b"b"]  # each request reached the server once
            assert pool.opened == 2
        finally:
            await pool.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
