"""The DM server against third-party peers: every TLS version and PSK-TLS suite of the DM
security profile negotiated by `openssl s_client` (and PSK by `gnutls-cli`), weak and
obsolete offers refused with an alert, and curl authenticating with --basic, --digest and
--cert/--key."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest
from dm_server_env import (
    Env,
    add_device,
    client,
    make_client_cert,
    run_env,
)

from openscws.dm import message as m
from openscws.dm.db_models import HttpAuth
from openscws.dm.server_tls import PSK_SUITES, available_psk_suites, certificate_fingerprint

pytestmark = pytest.mark.peer

PSK_ID, PSK_KEY = "peer-psk", bytes(range(16))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    for e in run_env(tmp_path_factory.mktemp("dms-peers")):
        add_device(e, "IMEI:PSK", http_auth=HttpAuth.PSK, psk_identity=PSK_ID, psk_key=PSK_KEY)
        yield e


def s_client(openssl: str, env: Env, *options: str) -> str:
    done = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{env.port}", *options],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def test_every_profile_psk_suite_is_here() -> None:
    assert available_psk_suites() == PSK_SUITES


@pytest.mark.parametrize("suite", PSK_SUITES, ids=lambda s: s.name)
def test_psk_suites_with_openssl(
    env: Env, suite: object, need_tool: Callable[[str, str], str]
) -> None:
    openssl = need_tool("openssl", "openssl")
    name = suite.openssl  # type: ignore[attr-defined]
    out = s_client(
        openssl, env, "-tls1_2", "-psk", PSK_KEY.hex(), "-psk_identity", PSK_ID, "-cipher", name
    )
    assert f"Cipher is {name}" in out, out
    assert "Protocol  : TLSv1.2" in out, out
    wrong = s_client(
        openssl, env, "-tls1_2", "-psk", "00" * 16, "-psk_identity", PSK_ID, "-cipher", name
    )
    assert "alert" in wrong, wrong
    assert f"Cipher is {name}" not in wrong or "decrypt error" in wrong or "bad record" in wrong


@pytest.mark.parametrize(
    ("flag", "version"), [("-tls1", "TLSv1"), ("-tls1_1", "TLSv1.1"), ("-tls1_2", "TLSv1.2")]
)
def test_tls_versions_with_openssl(
    env: Env, flag: str, version: str, need_tool: Callable[[str, str], str]
) -> None:
    openssl = need_tool("openssl", "openssl")
    out = s_client(
        openssl, env, flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", str(env.ca_file)
    )
    assert f"Protocol  : {version}" in out, out
    assert "Verify return code: 0 (ok)" in out, out


def test_weak_and_obsolete_offers_are_refused(
    env: Env, need_tool: Callable[[str, str], str]
) -> None:
    openssl = need_tool("openssl", "openssl")
    for options in (
        # TLS 1.0 offering only weak suites: NULL encryption, anonymous, no forward secrecy
        ("-tls1", "-cipher", "ECDHE-RSA-NULL-SHA:ADH-AES128-SHA:@SECLEVEL=0"),
        ("-tls1", "-cipher", "CAMELLIA128-SHA:AES256-SHA:@SECLEVEL=0"),
        ("-tls1_2", "-cipher", "NULL-SHA256:@SECLEVEL=0"),
        ("-tls1_3",),  # the DM profile stops at TLS 1.2
    ):
        out = s_client(openssl, env, *options)
        assert "Cipher is (NONE)" in out or "alert" in out, (options, out)
        assert "Protocol  : TLSv1.3" not in out


@pytest.mark.parametrize("kx", ["PSK", "RSA-PSK"])
def test_psk_with_gnutls(env: Env, kx: str, need_tool: Callable[[str, str], str]) -> None:
    """PSK and RSA_PSK, with the client CA configured (RSA_PSK then must not ask for a
    client certificate). DHE-PSK is left out: Debian's gnutls-cli 3.7.9 crashes (SIGSEGV) on
    every DHE-PSK handshake, against gnutls-serv as well; openssl checks DHE_PSK above."""
    gnutls = need_tool("gnutls-cli", "gnutls-bin")
    done = subprocess.run(
        [gnutls, "--pskusername", PSK_ID, "--pskkey", PSK_KEY.hex(),
         "--priority", f"NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+{kx}",
         "--x509cafile", str(env.ca_file), "-p", str(env.port), "127.0.0.1"],
        input=b"", capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert "Handshake was completed" in out, out
    assert f")-({kx})-" in out, out


def curl(
    curl_path: str, env: Env, body: bytes, *options: str
) -> tuple[int, bytes, subprocess.CompletedProcess[bytes]]:
    pkg = env.write("pkg.xml", body)
    done = subprocess.run(
        [curl_path, "-sS", "--cacert", str(env.ca_file), "-o", str(env.root / "answer"),
         "-w", "%{http_code}", "-H", f"Content-Type: {m.CONTENT_TYPE_XML}",
         "--data-binary", f"@{pkg}", *options, f"https://127.0.0.1:{env.port}/dm"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    code = int(done.stdout or b"0") if done.returncode == 0 else 0
    answer = (env.root / "answer").read_bytes() if code else b""
    return code, answer, done


def test_curl_basic_and_digest(env: Env, need_tool: Callable[[str, str], str]) -> None:
    curl_path = need_tool("curl", "curl")
    basic, digest = HttpAuth.BASIC, HttpAuth.DIGEST
    add_device(env, "IMEI:CURL-B", http_auth=basic, http_username="cb", http_password="p1")
    add_device(env, "IMEI:CURL-D", http_auth=digest, http_username="cd", http_password="p2")
    for dev, how, user, password in (
        ("IMEI:CURL-B", "--basic", "cb", "p1"),
        ("IMEI:CURL-D", "--digest", "cd", "p2"),
    ):
        body = client(dev).start().body
        code, answer, _ = curl(curl_path, env, body, how, "-u", f"{user}:{password}")
        assert code == 200
        assert m.decode(answer).hdr.target.loc_uri == dev
        code, _, _ = curl(curl_path, env, body, how, "-u", f"{user}:wrong")
        assert code == 401


def test_curl_client_certificate(env: Env, need_tool: Callable[[str, str], str]) -> None:
    curl_path = need_tool("curl", "curl")
    cert, key, der = make_client_cert(env.client_ca, "IMEI:CURL-C")
    add_device(
        env, "IMEI:CURL-C", http_auth=HttpAuth.CERT, cert_sha256=certificate_fingerprint(der)
    )
    c, k = env.write("c.pem", cert), env.write("k.pem", key)
    body = client("IMEI:CURL-C").start().body
    code, answer, _ = curl(curl_path, env, body, "--cert", str(c), "--key", str(k))
    assert code == 200
    assert m.decode(answer).hdr.target.loc_uri == "IMEI:CURL-C"
    rogue_cert, rogue_key, _ = make_client_cert(env.rogue_ca, "IMEI:CURL-C")
    rc, rk = env.write("rc.pem", rogue_cert), env.write("rk.pem", rogue_key)
    code, _, done = curl(curl_path, env, body, "--cert", str(rc), "--key", str(rk))
    assert code == 0, done  # the handshake fails: no HTTP answer at all
    assert b"unknown ca" in done.stderr.lower() or b"alert" in done.stderr.lower(), done.stderr
