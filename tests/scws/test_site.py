"""Routing decisions of `Site.prepare`, without the wire."""

from __future__ import annotations

import base64

import pytest
from httpwire import INDEX, NOW, EchoApp

from openscws.errors import HttpError
from openscws.http.cache import SITE_CACHE_CONTROL_KEY
from openscws.scws.apps import AppContext, Request, Response
from openscws.scws.model import MemoryStore, Realm, Resource
from openscws.scws.site import Site


def _request(path: str, method: str = "GET", *headers: tuple[bytes, bytes]) -> Request:
    return Request(method, path, path, "", headers)


def test_static_and_index(site: Site) -> None:
    for path in ("/", "/index.html"):
        response = site.prepare(_request(path), NOW)
        assert isinstance(response, Response)
        assert response.body == INDEX


def test_static_headers_are_cached_per_resource(site: Site) -> None:
    a = site.prepare(_request("/index.html"), NOW)
    b = site.prepare(_request("/index.html"), NOW)
    assert isinstance(a, Response)
    assert isinstance(b, Response)
    assert a.headers is b.headers
    site.store.put(Resource("/index.html", b"new", "text/plain"))
    c = site.prepare(_request("/index.html"), NOW)
    assert isinstance(c, Response)
    assert c.body == b"new"
    assert c.headers is not a.headers


def test_app_prefix_matching() -> None:
    store = MemoryStore()
    store.put(Resource("/appendix.html", b"static"))
    site = Site(store, secret=b"s" * 32)
    site.register_app("/app/", EchoApp())
    site.register_app("/app/deeper", _Named("deeper"))
    assert callable(site.prepare(_request("/app"), NOW))
    assert callable(site.prepare(_request("/app/x"), NOW))
    handler = site.prepare(_request("/app/deeper/x"), NOW)
    assert callable(handler)
    assert handler(_request("/app/deeper/x"), NOW).body == b"deeper"
    static = site.prepare(_request("/appendix.html"), NOW)
    assert isinstance(static, Response)
    assert static.body == b"static"


def test_root_app_takes_everything() -> None:
    site = Site(MemoryStore(), secret=b"s" * 32)
    site.register_app("/", _Named("root"))
    handler = site.prepare(_request("/any/thing"), NOW)
    assert callable(handler)
    assert handler(_request("/any/thing"), NOW).body == b"root"


def test_register_app_rejects_relative_prefix(site: Site) -> None:
    with pytest.raises(ValueError, match="absolute"):
        site.register_app("app", EchoApp())


@pytest.mark.parametrize(("method", "status"), [("BREW", 501), ("PUT", 405), ("POST", 405)])
def test_errors(site: Site, method: str, status: int) -> None:
    with pytest.raises(HttpError) as info:
        site.prepare(_request("/index.html", method), NOW)
    assert info.value.status == status


def test_error_response_page(site: Site) -> None:
    response = site.error_response(HttpError(413, "body over 10 bytes"))
    assert response.status == 413
    assert response.body == b"413 Content Too Large\nbody over 10 bytes\n"
    response = site.error_response(HttpError(599))
    assert response.body == b"599 Error\n"


class _Named:
    methods = frozenset({"GET"})

    def __init__(self, name: str) -> None:
        self.name = name

    def handle(self, request: Request, ctx: AppContext) -> Response:
        return Response(body=self.name.encode())


def test_content_encoding_and_language_headers() -> None:
    store = MemoryStore()
    store.put(Resource("/z", b"zz", "text/plain", content_encoding="br", content_language="fr"))
    store.put(Resource("/plain", b"p", "text/plain"))
    site = Site(store, secret=b"s" * 32)
    for method in ("GET", "HEAD"):
        response = site.prepare(_request("/z", method), NOW)
        assert isinstance(response, Response)
        assert response.headers[:3] == (
            ("Content-Type", "text/plain"),
            ("Content-Encoding", "br"),
            ("Content-Language", "fr"),
        )
    plain = site.prepare(_request("/plain"), NOW)
    assert isinstance(plain, Response)
    assert [name for name, _ in plain.headers] == ["Content-Type", "ETag", "Cache-Control"]
    # A 304 carries the validators and the cache policy only.
    etag = store.get("/z").etag  # type: ignore[union-attr]
    not_modified = site.prepare(_request("/z", "GET", (b"if-none-match", etag.encode())), NOW)
    assert isinstance(not_modified, Response)
    assert not_modified.status == 304
    assert [name for name, _ in not_modified.headers] == ["ETag", "Cache-Control"]


def _cache_control(site: Site, path: str, *headers: tuple[bytes, bytes]) -> tuple[int, str]:
    response = site.prepare(_request(path, "GET", *headers), NOW)
    assert isinstance(response, Response)
    fields = dict(response.headers)
    return response.status, fields["Cache-Control"]


def test_cache_policy_resource_then_site_default_then_builtin() -> None:
    """Every static answer says how long caches may keep it (RFC 9111 §5.2): the resource's
    own policy, else the site default in the card image, else no-cache (private for a
    protected resource), on 200 and on 304 alike."""
    store = MemoryStore()
    store.put(Resource("/page.html", b"p", "text/html", 1_000))
    store.put(Resource("/img/card.png", b"i", "image/png", 1_000, cache_control="max-age=86400"))
    store.put(Resource("/private.html", b"s", "text/html", 1_000, realm="operator"))
    site = Site(store, secret=b"s" * 32)
    site.store.put_realm(Realm("operator", {"admin": "scws"}, schemes=("Basic",)))
    basic = (b"authorization", b"Basic " + base64.b64encode(b"admin:scws"))
    assert _cache_control(site, "/page.html") == (200, "no-cache")
    assert _cache_control(site, "/img/card.png") == (200, "max-age=86400")
    assert _cache_control(site, "/private.html", basic) == (200, "private, no-cache")
    ims = (b"if-modified-since", b"Thu, 01 Jan 1970 00:16:40 GMT")
    assert _cache_control(site, "/page.html", ims) == (304, "no-cache")
    assert _cache_control(site, "/img/card.png", ims) == (304, "max-age=86400")

    # The site default (a card image value) takes over where no resource policy is set,
    # at once, without a restart.
    store.set_value(SITE_CACHE_CONTROL_KEY, b"max-age=60")
    assert site.site_cache_control() == "max-age=60"
    assert _cache_control(site, "/page.html") == (200, "max-age=60")
    assert _cache_control(site, "/page.html", ims) == (304, "max-age=60")
    assert _cache_control(site, "/private.html", basic) == (200, "max-age=60")
    assert _cache_control(site, "/img/card.png") == (200, "max-age=86400")
    store.set_value(SITE_CACHE_CONTROL_KEY, b"")
    assert _cache_control(site, "/page.html") == (200, "no-cache")
