"""The report `openscws dev` gives on a site: what a real card or its remote administration
would refuse."""

from __future__ import annotations

from openscws.scws.paths import MAX_PATH_BYTES
from openscws.scws.sitecheck import SiteFile, check_site, format_size


def test_a_site_that_fits_has_no_problem() -> None:
    files = [SiteFile("/index.html", 1000), SiteFile("/img/logo.png", 2000)]
    assert check_site(files, capacity=3000, max_resource=2000) == []


def test_the_total_over_capacity_is_one_site_wide_warning() -> None:
    files = [SiteFile("/a", 600), SiteFile("/b", 600)]
    (problem,) = check_site(files, capacity=1199, max_resource=1000)
    assert problem.severity == "warning"
    assert problem.path is None
    assert "card.capacity" in problem.message
    assert "1.2 KiB" in problem.message


def test_a_resource_over_admin_max_resource_is_named() -> None:
    (problem,) = check_site([SiteFile("/video.mp4", 5001)], capacity=10**9, max_resource=5000)
    assert problem.path == "/video.mp4"
    assert "card.admin_max_resource" in problem.message


def test_non_ascii_and_spaces_cannot_travel_by_remote_administration() -> None:
    files = [SiteFile("/café.html", 10), SiteFile("/my page.html", 10), SiteFile("/ok.html", 1)]
    problems = check_site(files, capacity=100, max_resource=100)
    assert [p.path for p in problems] == ["/café.html", "/my page.html"]
    assert all(p.severity == "warning" for p in problems)


def test_a_path_the_card_refuses_is_an_error_and_not_counted() -> None:
    long = "/" + "a" * MAX_PATH_BYTES
    files = [SiteFile(long, 10_000), SiteFile("/what?.html", 10_000), SiteFile("/x", 10)]
    problems = check_site(files, capacity=100, max_resource=100)
    assert [p.severity for p in problems] == ["error", "error"]
    assert {p.path for p in problems} == {long, "/what?.html"}
    assert str(problems[0]).startswith("error: not served:")


def test_errors_come_before_warnings() -> None:
    files = [SiteFile("/a?b", 1), SiteFile("/big", 50)]
    problems = check_site(files, capacity=10, max_resource=10)
    assert [p.severity for p in problems] == ["error", "warning", "warning"]


def test_format_size() -> None:
    assert format_size(812) == "812 bytes"
    assert format_size(12_800) == "12.5 KiB"
    assert format_size(3 * 1024 * 1024) == "3.0 MiB"
