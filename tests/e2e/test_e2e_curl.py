"""The real curl against `openscws up`: every byte crosses the BIP gateway and the card.

Status codes of the HTTP engine (200, 304, 400, 404, 405, 411, 413, 414, 431, 501), Digest
and Basic authentication, chunked request and response bodies, persistent connections and
pipelining. Raw sockets stand in for curl where curl will not send the request (no length,
garbage)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_wire import Reader, connect, exchange, run

from openscws.demo import DEMO_PASSWORD, DEMO_USER, demo_files

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

DEMO = demo_files()


@dataclass(frozen=True)
class CurlResult:
    status: int
    headers: dict[str, str]  # the last response's, names lower-case, repeats on new lines
    body: bytes
    stderr: str
    code: int  # curl's exit code


@pytest.fixture
def curl_bin(need_tool: Callable[[str, str], str]) -> str:
    return need_tool("curl", "curl")


@pytest.fixture
def curl(
    curl_bin: str, scws_server: tuple[str, Path, object], tmp_path: Path
) -> Callable[..., CurlResult]:
    base = scws_server[0]

    def run_curl(path: str, *args: str, timeout: float = 20.0) -> CurlResult:
        hdr, body = tmp_path / "headers", tmp_path / "body"
        for f in (hdr, body):
            f.unlink(missing_ok=True)
        proc = run(
            [
                curl_bin,
                "-sS",
                "--max-time",
                str(timeout - 5),
                "-D",
                str(hdr),
                "-o",
                str(body),
                "-w",
                "%{http_code}",
                *args,
                base + path,
            ],
            timeout=timeout,
        )
        headers: dict[str, str] = {}
        text = hdr.read_bytes().decode("latin-1") if hdr.exists() else ""
        last = text.strip().split("\r\n\r\n")[-1] if text.strip() else ""
        for line in last.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            # Repeated fields (WWW-Authenticate) are kept, one per line.
            headers[key] = f"{headers[key]}\n{value.strip()}" if key in headers else value.strip()
        return CurlResult(
            int(proc.stdout.decode() or 0),
            headers,
            body.read_bytes() if body.exists() else b"",
            proc.stderr.decode(errors="replace"),
            proc.returncode,
        )

    return run_curl


@pytest.mark.parametrize("path", ["/index.html", "/style.css", "/img/card.png"])
def test_get_demo_files(curl: Callable[..., CurlResult], path: str) -> None:
    r = curl(path)
    assert r.status == 200, r
    assert r.body == DEMO[path]
    assert r.headers["content-length"] == str(len(DEMO[path]))
    assert r.headers["server"] == "openscws-SCWS"


def test_get_root_serves_index(curl: Callable[..., CurlResult]) -> None:
    r = curl("/")
    assert r.status == 200
    assert r.body == DEMO["/index.html"]
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["etag"].startswith('"')
    assert r.headers["last-modified"].endswith(" GMT")
    # Caches do not pick their own freshness: every resource says (RFC 9111 §5.2).
    assert r.headers["cache-control"] == "no-cache"


def test_head(curl: Callable[..., CurlResult]) -> None:
    r = curl("/img/card.png", "-I")  # -I writes the head where the body would go
    assert r.status == 200
    assert r.body.startswith(b"HTTP/1.1 200 OK\r\n")
    assert r.body.index(b"\r\n\r\n") == len(r.body) - 4  # and nothing after it
    assert r.headers["content-length"] == str(len(DEMO["/img/card.png"]))
    assert r.headers["content-type"] == "image/png"


def test_not_modified_by_etag(curl: Callable[..., CurlResult]) -> None:
    etag = curl("/style.css").headers["etag"]
    r = curl("/style.css", "-H", f"If-None-Match: {etag}")
    assert r.status == 304
    assert r.body == b""
    assert r.headers["etag"] == etag
    assert r.headers["cache-control"] == "no-cache"  # a 304 repeats it (RFC 9110 §15.4.5)
    assert curl("/style.css", "-H", 'If-None-Match: "other"').status == 200


def test_not_modified_since(curl: Callable[..., CurlResult]) -> None:
    modified = curl("/style.css").headers["last-modified"]
    r = curl("/style.css", "-H", f"If-Modified-Since: {modified}")
    assert r.status == 304
    assert r.body == b""
    old = curl("/style.css", "-H", "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT")
    assert old.status == 200
    assert old.body == DEMO["/style.css"]


def test_not_found(curl: Callable[..., CurlResult]) -> None:
    r = curl("/no/such/page.html")
    assert r.status == 404
    assert r.body.startswith(b"404 Not Found")


def test_method_not_allowed(curl: Callable[..., CurlResult]) -> None:
    r = curl("/index.html", "-X", "PUT", "--data-binary", "new page")
    assert r.status == 405
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"


def test_not_implemented(curl: Callable[..., CurlResult]) -> None:
    r = curl("/", "-X", "BREW")
    assert r.status == 501


def test_length_required(scws_server: tuple[str, Path, object]) -> None:
    # curl always frames a POST body, so send one without Content-Length by hand.
    r = exchange(scws_server[0], b"POST /app/info HTTP/1.1\r\nHost: card\r\n\r\n")
    assert r.status == 411
    assert r.header("connection") == "close"


def test_payload_too_large(curl: Callable[..., CurlResult], tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    r = curl("/app/info/reset", "--data-binary", f"@{big}")
    assert r.status == 413, r
    assert r.headers["connection"] == "close"


def test_uri_too_long(curl: Callable[..., CurlResult]) -> None:
    r = curl("/" + "a" * 3000)
    assert r.status == 414


def test_header_too_large(curl: Callable[..., CurlResult]) -> None:
    r = curl("/", "-H", "X-Big: " + "b" * 10000)
    assert r.status == 431, r


def test_garbage_is_bad_request(scws_server: tuple[str, Path, object]) -> None:
    with connect(scws_server[0]) as s:
        s.sendall(b"\x00\x01\x02 this is not HTTP\r\n\r\n")
        reader = Reader(s)
        r = reader.response()
        assert r.status == 400
        assert reader.at_eof()
    # The card is fine afterwards.
    assert exchange(scws_server[0], b"GET / HTTP/1.1\r\nHost: card\r\n\r\n").status == 200


def test_chunked_response_body(curl: Callable[..., CurlResult]) -> None:
    """The sample app's /log streams its body: curl gets it chunked and whole."""
    r = curl("/app/info/log?lines=500")
    assert r.status == 200
    assert r.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.headers
    lines = r.body.decode("ascii").splitlines()
    assert len(lines) == 500
    assert lines[0].startswith("00001 card ")
    assert lines[-1].endswith("line 500 of 500")


def test_chunked_request_body(curl_bin: str, scws_server: tuple[str, Path, object]) -> None:
    base = scws_server[0]
    body = b"reset=1&" + b"z" * 5000  # several BIP buffers, several chunks
    proc = run(
        [
            curl_bin,
            "-sS",
            "-v",
            "--max-time",
            "15",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}\\n",
            base + "/app/info/reset",
            "--next",
            "-sS",
            "-w",
            "\\n%{http_code} %{num_connects}\\n",
            base + "/app/info/json",
        ],
        timeout=20,
        stdin=body,
    )
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.decode(errors="replace")
    assert "Transfer-Encoding: chunked" in err
    out = proc.stdout.decode().splitlines()
    # The reset answered 303 after the whole chunked body was read...
    assert out[0] == "303 1", out
    # ...so the connection was clean for the next request, which sees the reset counter.
    assert out[-1] == "200 0", out
    doc = json.loads(out[1])
    assert doc["visits"] == 1
    assert "Re-using existing connection" in err


def test_digest_auth(curl: Callable[..., CurlResult]) -> None:
    r = curl("/private/index.html", "--digest", "-u", f"{DEMO_USER}:{DEMO_PASSWORD}")
    assert r.status == 200, r
    assert r.body == DEMO["/private/index.html"]


def test_digest_wrong_password(curl: Callable[..., CurlResult]) -> None:
    r = curl("/private/index.html", "--digest", "-u", f"{DEMO_USER}:wrong")
    assert r.status == 401
    challenges = r.headers["www-authenticate"].splitlines()
    assert any(c.startswith("Digest ") for c in challenges), challenges
    assert any(c.startswith("Basic ") for c in challenges), challenges
    assert r.body != DEMO["/private/index.html"]


def test_no_credentials(curl: Callable[..., CurlResult]) -> None:
    r = curl("/private/index.html")
    assert r.status == 401
    assert 'realm="operator"' in r.headers["www-authenticate"]


def test_basic_auth(curl: Callable[..., CurlResult]) -> None:
    r = curl("/private/index.html", "--basic", "-u", f"{DEMO_USER}:{DEMO_PASSWORD}")
    assert r.status == 200
    assert r.body == DEMO["/private/index.html"]
    assert curl("/private/index.html", "--basic", "-u", "admin:nope").status == 401


def test_keep_alive_reuses_connection(curl_bin: str, scws_server: tuple[str, Path, object]) -> None:
    base = scws_server[0]
    paths = ["/", "/style.css", "/img/card.png"]
    args = [curl_bin, "-sS", "-v", "--max-time", "15", "-w", "\\n@@%{http_code} %{num_connects}"]
    for p in paths:
        args += ["-o", "/dev/null", base + p]
    proc = run(args, timeout=20)
    assert proc.returncode == 0, proc.stderr
    marks = re.findall(r"@@(\d+) (\d+)", proc.stdout.decode())
    assert marks == [("200", "1"), ("200", "0"), ("200", "0")]
    assert proc.stderr.decode().count("Re-using existing connection") == 2


def test_pipelining(scws_server: tuple[str, Path, object]) -> None:
    paths = ["/style.css", "/img/card.png", "/index.html"]
    requests = b"".join(f"GET {p} HTTP/1.1\r\nHost: card\r\n\r\n".encode() for p in paths)
    with connect(scws_server[0]) as s:
        s.sendall(requests)  # all three in one write
        reader = Reader(s)
        for p in paths:
            r = reader.response()
            assert r.status == 200, p
            assert r.body == DEMO[p], p
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: card\r\nConnection: close\r\n\r\n")
        r = reader.response(head=True)
        assert r.status == 200
        assert r.header("connection") == "close"
        assert reader.at_eof()
