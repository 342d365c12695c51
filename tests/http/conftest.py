from __future__ import annotations

import pytest
from httpwire import make_conn, make_site

from openscws.http import HttpServerConnection
from openscws.scws.site import Site


@pytest.fixture
def site() -> Site:
    return make_site()


@pytest.fixture
def conn(site: Site) -> HttpServerConnection:
    return make_conn(site)
