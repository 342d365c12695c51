"""Basic (RFC 7617) and Digest (RFC 7616) on protected resources and applications."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from httpwire import NOW, PASSWORD, REALM, SECRET, USER, exchange, get, make_conn, make_site

from openscws.errors import HttpError
from openscws.http import HttpServerConnection
from openscws.scws.auth import Authenticator, digest_response, parse_auth_params
from openscws.scws.model import Realm

# RFC 7616 §3.9.1: the example exchange, with MD5 and with SHA-256.
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_MD5 = "8ca523f5e9506fed4657c9700eebdbec"
RFC_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def _rfc_formula(algorithm: str, nonce: str, nc: str, cnonce: str, method: str, uri: str) -> str:
    """RFC 7616 §3.4.1, written out independently of openscws."""
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]

    def h(s: str) -> str:
        return hashlib.new(name, s.encode()).hexdigest()

    ha1 = h(f"{USER}:{REALM}:{PASSWORD}")
    ha2 = h(f"{method}:{uri}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


@pytest.mark.parametrize(("algorithm", "expected"), [("MD5", RFC_MD5), ("SHA-256", RFC_SHA256)])
def test_rfc7616_vector(algorithm: str, expected: str) -> None:
    args = {"nonce": RFC_NONCE, "nc": "00000001", "cnonce": RFC_CNONCE}
    ours = digest_response(
        algorithm,
        username=USER,
        realm=REALM,
        password=PASSWORD,
        method="GET",
        uri="/dir/index.html",
        **args,
    )
    assert ours == expected
    assert _rfc_formula(algorithm, RFC_NONCE, "00000001", RFC_CNONCE, "GET", "/dir/index.html") == (
        expected
    )


def test_parse_auth_params() -> None:
    params = parse_auth_params(
        'username="Mufasa", realm="a, \\"b\\"",nc=00000001 , qop=auth, uri="/x?y=1"'
    )
    assert params == {
        "username": "Mufasa",
        "realm": 'a, "b"',
        "nc": "00000001",
        "qop": "auth",
        "uri": "/x?y=1",
    }
    for bad in ['username="x', "a=1, a=2", "=x", 'a="1" b=2']:
        with pytest.raises(HttpError):
            parse_auth_params(bad)


def _challenges(conn: HttpServerConnection, path: str = "/dir/index.html") -> list[str]:
    (r,) = exchange(conn, get(path), ["GET"])
    assert r.status == 401
    return r.all("www-authenticate")


def test_challenges_sha256_first_then_md5_then_basic(conn: HttpServerConnection) -> None:
    values = _challenges(conn)
    assert len(values) == 3
    assert values[0].startswith(f'Digest realm="{REALM}", qop="auth", algorithm=SHA-256, nonce="')
    assert "algorithm=MD5" in values[1]
    assert values[2] == f'Basic realm="{REALM}", charset="UTF-8"'
    nonces = [parse_auth_params(v.partition(" ")[2])["nonce"] for v in values[:2]]
    assert nonces[0] != nonces[1]


def _digest_header(
    challenge: str,
    *,
    uri: str = "/dir/index.html",
    method: str = "GET",
    nc: str = "00000001",
    user: str = USER,
    realm: str = REALM,
    password: str = PASSWORD,
) -> str:
    params = parse_auth_params(challenge.partition(" ")[2])
    algorithm, nonce, cnonce = params["algorithm"], params["nonce"], "0a4f113b"
    name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]

    def h(s: str) -> str:
        return hashlib.new(name, s.encode()).hexdigest()

    response = h(
        f"{h(f'{user}:{realm}:{password}')}:{nonce}:{nc}:{cnonce}:auth:{h(f'{method}:{uri}')}"
    )
    return (
        f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", '
        f'uri="{uri}", algorithm={algorithm}, qop=auth, nc={nc}, cnonce="{cnonce}", '
        f'response="{response}"'
    )


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_digest_success(conn: HttpServerConnection, index: int) -> None:
    challenge = _challenges(conn)[index]
    (r,) = exchange(conn, get("/dir/index.html", _digest_header(challenge)), ["GET"])
    assert (r.status, r.body) == (200, b"<p>protected</p>")
    # the next nonce-count on the same nonce works too
    (r,) = exchange(
        conn, get("/dir/", _digest_header(challenge, uri="/dir/", nc="00000002")), ["GET"]
    )
    assert r.status == 200


def test_digest_nc_replay_is_401(conn: HttpServerConnection) -> None:
    challenge = _challenges(conn)[0]
    header = _digest_header(challenge, nc="00000005")
    ok, replay, lower = exchange(
        conn,
        get("/dir/index.html", header)
        + get("/dir/index.html", header)
        + get("/dir/index.html", _digest_header(challenge, nc="00000003")),
        ["GET"] * 3,
    )
    assert (ok.status, replay.status, lower.status) == (200, 401, 401)
    assert "stale" not in replay.header("www-authenticate")  # type: ignore[operator]


def test_digest_stale_nonce(conn: HttpServerConnection) -> None:
    challenge = _challenges(conn)[0]
    (r,) = exchange(conn, get("/dir/index.html", _digest_header(challenge)), ["GET"], now=NOW + 301)
    assert r.status == 401
    values = r.all("www-authenticate")
    assert all("stale=true" in v for v in values if v.startswith("Digest"))
    assert not any("stale" in v for v in values if v.startswith("Basic"))
    # a fresh nonce from that challenge works
    (r,) = exchange(conn, get("/dir/index.html", _digest_header(values[0])), ["GET"], now=NOW + 301)
    assert r.status == 200


def test_stale_only_with_right_password(conn: HttpServerConnection) -> None:
    challenge = _challenges(conn)[0]
    header = _digest_header(challenge, password="wrong")
    (r,) = exchange(conn, get("/dir/index.html", header), ["GET"], now=NOW + 301)
    assert r.status == 401
    assert "stale" not in (r.header("www-authenticate") or "")


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"password": "wrong"}, 401),
        ({"user": "Scar"}, 401),
        ({"realm": "other"}, 401),
        ({"uri": "/other"}, 400),
        ({"method": "POST"}, 401),
    ],
)
def test_digest_failures(conn: HttpServerConnection, change: dict[str, str], status: int) -> None:
    challenge = _challenges(conn)[0]
    (r,) = exchange(conn, get("/dir/index.html", _digest_header(challenge, **change)), ["GET"])
    assert r.status == status


def test_digest_forged_nonce(conn: HttpServerConnection) -> None:
    challenge = _challenges(conn)[0].replace('nonce="', 'nonce="A', 1)
    (r,) = exchange(conn, get("/dir/index.html", _digest_header(challenge)), ["GET"])
    assert r.status == 401


def test_digest_nonce_from_other_secret_rejected() -> None:
    other = make_conn(make_site(secret=b"x" * 32))
    challenge = _challenges(other)[0]
    conn = make_conn()
    (r,) = exchange(conn, get("/dir/index.html", _digest_header(challenge)), ["GET"])
    assert r.status == 401


def test_digest_missing_parameter(conn: HttpServerConnection) -> None:
    header = _digest_header(_challenges(conn)[0])
    header = re.sub(r', cnonce="[^"]*"', "", header)
    (r,) = exchange(conn, get("/dir/index.html", header), ["GET"])
    assert r.status == 401


def test_digest_bad_nc_is_400(conn: HttpServerConnection) -> None:
    header = _digest_header(_challenges(conn)[0]).replace("nc=00000001", "nc=1")
    (r,) = exchange(conn, get("/dir/index.html", header), ["GET"])
    assert r.status == 400


def test_digest_userhash_and_username_star() -> None:
    auth = Authenticator(SECRET)
    realm = Realm(REALM, {USER: PASSWORD})
    nonce = auth.make_nonce(REALM, NOW)

    def rest(nc: str) -> str:
        response = digest_response(
            "SHA-256",
            username=USER,
            realm=REALM,
            password=PASSWORD,
            method="GET",
            uri="/x",
            nonce=nonce,
            nc=nc,
            cnonce="c",
        )
        return (
            f'realm="{REALM}", nonce="{nonce}", uri="/x", algorithm=SHA-256, qop=auth, '
            f'nc={nc}, cnonce="c", response="{response}"'
        )

    # RFC 7616 §3.4.4: userhash = H(username ":" realm)
    userhash = hashlib.sha256(f"{USER}:{REALM}".encode()).hexdigest()
    hashed = f'Digest username="{userhash}", userhash=true, {rest("00000001")}'
    assert auth.authenticate(realm, "GET", "/x", hashed, NOW) == USER
    # RFC 8187 ext-value
    starred = f"Digest username*=UTF-8''Mufasa, {rest('00000002')}"
    assert auth.authenticate(realm, "GET", "/x", starred, NOW) == USER


def test_nonce_tracking_is_bounded() -> None:
    auth = Authenticator(SECRET, max_tracked_nonces=2)
    realm = Realm(REALM, {USER: PASSWORD})

    def header(nonce: str) -> str:
        response = digest_response(
            "MD5",
            username=USER,
            realm=REALM,
            password=PASSWORD,
            method="GET",
            uri="/",
            nonce=nonce,
            nc="00000001",
            cnonce="c",
        )
        return (
            f'Digest username="{USER}", realm="{REALM}", nonce="{nonce}", uri="/", qop=auth, '
            f'nc=00000001, cnonce="c", response="{response}"'
        )

    nonces = [auth.make_nonce(REALM, NOW) for _ in range(4)]
    for nonce in nonces[1:]:
        assert auth.authenticate(realm, "GET", "/", header(nonce), NOW) == USER
    with pytest.raises(HttpError) as info:  # forgotten: answered stale, not replayable
        auth.authenticate(realm, "GET", "/", header(nonces[0]), NOW)
    assert info.value.status == 401
    assert any("stale=true" in v for _, v in info.value.headers)


def _basic(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Authorization: Basic {token}"


def test_basic(conn: HttpServerConnection) -> None:
    ok, wrong, unknown = exchange(
        conn,
        get("/dir/index.html", _basic(USER, PASSWORD))
        + get("/dir/index.html", _basic(USER, "nope"))
        + get("/dir/index.html", _basic("Scar", PASSWORD)),
        ["GET"] * 3,
    )
    assert (ok.status, wrong.status, unknown.status) == (200, 401, 401)


def test_basic_utf8_and_only_scheme(conn: HttpServerConnection) -> None:
    (challenge,) = _challenges(conn, "/basic.html")
    assert challenge == 'Basic realm="basic-only", charset="UTF-8"'
    ok, digest = exchange(
        conn,
        get("/basic.html", _basic("alice", "sëcret"))
        + get("/basic.html", "Authorization: Digest username=x"),
        ["GET", "GET"],
    )
    assert (ok.status, digest.status) == (200, 401)


@pytest.mark.parametrize("token", ["!!!", base64.b64encode(b"nocolon").decode()])
def test_basic_malformed_is_400(conn: HttpServerConnection, token: str) -> None:
    (r,) = exchange(conn, get("/dir/index.html", f"Authorization: Basic {token}"), ["GET"])
    assert r.status == 400


def test_protected_app_gets_user(conn: HttpServerConnection) -> None:
    challenge = _challenges(conn, "/admin/echo/user")[1]
    header = _digest_header(challenge, uri="/admin/echo/user")
    (r,) = exchange(conn, get("/admin/echo/user", header), ["GET"])
    assert (r.status, r.body) == (200, USER.encode())


def test_protected_app_post_401_then_digest() -> None:
    conn = make_conn()
    body = b"payload"
    request = get("/admin/echo", f"Content-Length: {len(body)}", method="POST") + body
    (r,) = exchange(conn, request, ["POST"])
    assert r.status == 401
    assert not conn.should_close
    header = _digest_header(r.all("www-authenticate")[0], uri="/admin/echo", method="POST")
    request = get("/admin/echo", f"Content-Length: {len(body)}", header, method="POST") + body
    (r,) = exchange(conn, request, ["POST"])
    assert (r.status, r.body) == (200, body)


def test_realm_not_configured_is_403(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/orphan.html"), ["GET"])
    assert r.status == 403


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        Authenticator(b"short")
