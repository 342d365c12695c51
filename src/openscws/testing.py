"""A pytest plugin for projects that test against a Smart Card Web Server: fixtures that start
a virtual card and its BIP gateway in the test's process, on free ports, and stop them after.

Installed with openscws, the plugin loads by itself (entry point ``pytest11``); with
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set, name it in a conftest.py:
``pytest_plugins = ["openscws.testing"]``.

Fixtures:

``scws_card``
    A fresh card with an empty site (image in the test's tmp_path), serving HTTP and HTTPS on
    free local ports: a `CardHarness` (`openscws.aio.harness`). ``scws_card.url("/x")``,
    ``scws_card.url("/x", https=True)``, ``scws_card.ca_pem`` (trust it for HTTPS),
    ``scws_card.put(path, body)`` / ``.delete(path)`` (the image, atomically),
    ``scws_card.apdus`` / ``.trace()`` / ``.clear_trace()`` (every APDU on the card link).
``scws_card_factory``
    ``scws_card_factory(demo=True, link="iso7816:ta1=0x96", settings=...)`` for other cards;
    each is stopped at the end of the test.

The card runs on a thread of its own; every request a test makes crosses real BIP commands
in APDUs, as on a handset (docs/testing.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openscws.aio.harness import ApduExchange, CardHarness
from openscws.config import Settings

__all__ = ["ApduExchange", "CardHarness", "scws_card", "scws_card_factory"]

CardFactory = Callable[..., CardHarness]


@pytest.fixture
def scws_card_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CardFactory]:
    """`factory(demo=False, link="direct", settings=None)` starts a card, stopped after."""
    started: list[CardHarness] = []

    def start(
        *, demo: bool = False, link: str = "direct", settings: Settings | None = None
    ) -> CardHarness:
        data: Path = tmp_path_factory.mktemp("scws-card")
        card = CardHarness(data, demo=demo, link=link, settings=settings)
        card.start()
        started.append(card)
        return card

    try:
        yield start
    finally:
        for card in reversed(started):
            card.stop()


@pytest.fixture
def scws_card(scws_card_factory: CardFactory) -> CardHarness:
    """A running card with an empty site (see the module's documentation)."""
    return scws_card_factory()
