"""Will this site fit on a card? The checks `openscws dev` runs on a folder, as pure data.

Given the files of a site (their resource paths and sizes), `check_site` lists what a real
card, or its remote administration, would refuse or struggle with:

- a path the card cannot hold at all (`openscws.scws.paths.path_problem`: over
  `MAX_PATH_BYTES` bytes of UTF-8, a control character, "?" or "#", ...): the file is not
  served;
- a path the admin server cannot deliver (`admin_path_problem`: not printable ASCII, a space,
  under /.scws/): served here, but no campaign can put it on a card (GP Amendment B carries
  paths inside embedded HTTP request lines);
- a resource larger than `card.admin_max_resource` (at most one GP Amendment B command's
  worth, `MAX_ADMIN_RESOURCE`): no campaign can deliver it;
- a site whose resources together exceed `card.capacity`, the card's storage for content.

Nothing here reads files: the shell (`openscws.store.devsite`) scans the folder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from openscws.scws.paths import admin_path_problem, path_problem

__all__ = ["SiteFile", "SiteProblem", "check_site", "format_size"]

Severity = Literal["error", "warning"]

KIB: Final = 1024


@dataclass(frozen=True, slots=True)
class SiteFile:
    """One file of the site: the resource path it is served at, and its size in bytes."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class SiteProblem:
    """One finding. `error`: the card cannot serve the file (it is skipped); `warning`: it
    is served here but would not reach, or not fit on, a real card."""

    severity: Severity
    path: str | None
    """The resource concerned; None for the site as a whole."""
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


def format_size(size: int) -> str:
    """ "812 bytes", "12.5 KiB", "1.2 MiB"."""
    if size < KIB:
        return f"{size} bytes"
    if size < KIB * KIB:
        return f"{size / KIB:.1f} KiB"
    return f"{size / (KIB * KIB):.1f} MiB"


def check_site(files: Iterable[SiteFile], *, capacity: int, max_resource: int) -> list[SiteProblem]:
    """Every problem of the site made of `files`, errors first, each group in path order."""
    errors: list[SiteProblem] = []
    warnings: list[SiteProblem] = []
    total = 0
    for f in sorted(files, key=lambda f: f.path):
        problem = path_problem(f.path)
        if problem is not None:
            errors.append(SiteProblem("error", f.path, f"not served: {problem}"))
            continue
        total += f.size
        admin = admin_path_problem(f.path)
        if admin is not None:
            warnings.append(
                SiteProblem(
                    "warning",
                    f.path,
                    f"{f.path!r} cannot be delivered by remote administration: {admin}",
                )
            )
        if f.size > max_resource:
            warnings.append(
                SiteProblem(
                    "warning",
                    f.path,
                    f"{f.path} is {format_size(f.size)}, over card.admin_max_resource "
                    f"({format_size(max_resource)}): remote administration cannot deliver it",
                )
            )
    if total > capacity:
        warnings.append(
            SiteProblem(
                "warning",
                None,
                f"the site is {format_size(total)}, over the card's capacity for content "
                f"(card.capacity = {format_size(capacity)})",
            )
        )
    return errors + warnings
