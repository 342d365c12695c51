"""One definition of a resource path and of the admin command size (openscws.scws.paths),
shared by the card's image, its admin agent and the admin server's repository."""

from __future__ import annotations

import pytest

from openscws.errors import StoreError
from openscws.scws.paths import (
    AMDB_MAX_COMMAND,
    AMDB_MAX_HEAD,
    MAX_ADMIN_RESOURCE,
    admin_path_problem,
    is_directory,
    path_problem,
    validate_path,
)


@pytest.mark.parametrize(
    "path", ["/", "/a.html", "/app/", "/a/b/c.css", "/caf\u00e9.html", "/" + "a" * 1023]
)
def test_card_paths(path: str) -> None:
    assert path_problem(path) is None
    assert validate_path(path) == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a.html", "absolute"),
        ("/a\\b", "forbidden"),
        ("/a?b", "forbidden"),
        ("/a#b", "forbidden"),
        ("/a\x00", "forbidden"),
        ("//a", "normalised"),
        ("/a/../b", "normalised"),
        ("/./a", "normalised"),
        ("/" + "a" * 1024, "longer than 1024"),
        ("/\udc80", "Unicode"),
    ],
)
def test_paths_the_card_refuses(path: str, reason: str) -> None:
    assert reason in (path_problem(path) or "")
    with pytest.raises(StoreError, match=reason):
        validate_path(path)
    assert admin_path_problem(path) is not None  # the repository refuses them too


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/", "directory"),
        ("/dir/", "directory"),
        ("/a b", "printable ASCII"),
        ("/caf\u00e9", "printable ASCII"),
        ("/.scws/commit", "/.scws/"),
    ],
)
def test_the_repository_adds_its_own_rules(path: str, reason: str) -> None:
    assert reason in (admin_path_problem(path) or "")


def test_directories_end_with_a_slash() -> None:
    assert is_directory("/")
    assert is_directory("/app/")
    assert not is_directory("/app")


def test_one_admin_command_carries_the_largest_resource() -> None:
    assert MAX_ADMIN_RESOURCE == AMDB_MAX_COMMAND - AMDB_MAX_HEAD
    from openscws.amdb.client import SessionParams

    params = SessionParams(host="h", agent_id="a", uri="/x")
    assert (params.max_body, params.max_header) == (AMDB_MAX_COMMAND, AMDB_MAX_HEAD)


def test_the_largest_put_the_repository_takes_fits_one_command() -> None:
    """The worst case the repository accepts (longest path and header values, largest body)
    is one embedded request the card's agent holds and decodes (GP Amendment B)."""
    from openscws.amdb.embedded import EmbeddedRequest

    path = "/" + "p" * 1023
    headers = (
        ("X-SCWS-Transaction", "t" * 64),
        ("Content-Type", "t/" + "x" * 253),
        ("Content-Encoding", "e" * 64),
        ("Content-Language", "l" * 64),
        ("X-SCWS-Realm", "r" * 255),
    )
    assert admin_path_problem(path) is None
    request = EmbeddedRequest("PUT", path, headers, b"\0" * MAX_ADMIN_RESOURCE)
    wire = request.encode()
    assert len(wire) <= AMDB_MAX_COMMAND
    back = EmbeddedRequest.decode(wire, max_body=AMDB_MAX_COMMAND, max_header=AMDB_MAX_HEAD)
    assert len(back.body) == MAX_ADMIN_RESOURCE
