"""The client's management tree (OMA-TS-DM_TND V1.2), sans-IO: the nodes a DM server's
commands act on, with each node's format and access types, and the standard objects a
DM 1.2 client carries (OMA-TS-DM_StdObj V1.2): DevInfo, DevDetail and the DM Account MO
(./DMAcc/<x>, urn:oma:mo:oma-dm-dmacc:1.0).

Each operation answers a SyncML status code (OMA-TS-DM_RepPro §4.3 / SyncML_RepPro §10):
200 OK, 404 not found, 405 command not allowed (the node's access type lacks it: a
credential's AAuthSecret can be written but never read back), 418 already exists,
406 optional feature not supported (a format the node cannot take)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

__all__ = ["AccessType", "Node", "Outcome", "Tree", "dm_account", "standard_tree"]


class AccessType(enum.Flag):
    """DM TND §7.7.7 AccessType."""

    ADD = enum.auto()
    COPY = enum.auto()
    DELETE = enum.auto()
    EXEC = enum.auto()
    GET = enum.auto()
    REPLACE = enum.auto()


ALL: Final = (
    AccessType.ADD
    | AccessType.COPY
    | AccessType.DELETE
    | AccessType.EXEC
    | AccessType.GET
    | AccessType.REPLACE
)
READ_ONLY: Final = AccessType.GET
WRITE_ONLY: Final = AccessType.ADD | AccessType.REPLACE
LEAF_FORMATS: Final = frozenset({"chr", "int", "bool", "bin", "b64", "xml", "null", "float"})


@dataclass(slots=True)
class Node:
    format: str = "node"  # "node" for interior nodes, a leaf format otherwise
    value: str | bytes = ""
    access: AccessType = ALL
    type: str | None = None  # MIME type of a leaf, DDF name of an interior node
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def interior(self) -> bool:
        return self.format == "node"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    node: Node | None = None
    data: str | bytes | None = None


def split(uri: str) -> list[str] | None:
    """The segments of a node URI (./A/B or A/B), or None if it is not one."""
    uri = uri.removeprefix("./")
    if uri in ("", "."):
        return []
    parts = uri.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts


class Tree:
    def __init__(self) -> None:
        self.root = Node(access=AccessType.GET)

    def find(self, uri: str) -> Node | None:
        parts = split(uri)
        if parts is None:
            return None
        node = self.root
        for p in parts:
            if p not in node.children:
                return None
            node = node.children[p]
        return node

    def _parent(self, uri: str) -> tuple[Node, str] | None:
        parts = split(uri)
        if not parts:
            return None
        parent = self.find("/".join(parts[:-1]))
        return (parent, parts[-1]) if parent is not None and parent.interior else None

    def get(self, uri: str) -> Outcome:
        node = self.find(uri)
        if node is None:
            return Outcome(404)
        if AccessType.GET not in node.access:
            return Outcome(405)
        if node.interior:  # DM TND §6: an interior node's value is its child list
            return Outcome(200, node, "/".join(node.children))
        return Outcome(200, node, node.value)

    def add(
        self,
        uri: str,
        value: str | bytes | None = None,
        fmt: str = "chr",
        access: AccessType = ALL,
        mime: str | None = None,
    ) -> Outcome:
        if self.find(uri) is not None:
            return Outcome(418)
        found = self._parent(uri)
        if found is None:
            return Outcome(404)
        parent, name = found
        if AccessType.ADD not in parent.access and parent is not self.root:
            return Outcome(405)
        if fmt != "node" and fmt not in LEAF_FORMATS:
            return Outcome(406)
        node = Node(fmt, value if value is not None else "", access, mime)
        parent.children[name] = node
        return Outcome(200, node)

    def replace(self, uri: str, value: str | bytes) -> Outcome:
        node = self.find(uri)
        if node is None:
            return Outcome(404)
        if AccessType.REPLACE not in node.access:
            return Outcome(405)
        if node.interior:
            return Outcome(405)
        node.value = value
        return Outcome(200, node)

    def delete(self, uri: str) -> Outcome:
        node = self.find(uri)
        found = self._parent(uri)
        if node is None or found is None:
            return Outcome(404)
        if AccessType.DELETE not in node.access:
            return Outcome(405)
        del found[0].children[found[1]]
        return Outcome(200)

    def copy(self, target: str, source: str) -> Outcome:
        node = self.find(source)
        if node is None:
            return Outcome(404)
        if AccessType.COPY not in node.access or node.interior:
            return Outcome(405)
        if self.find(target) is not None:
            return self.replace(target, node.value)
        return self.add(target, node.value, node.format, node.access, node.type)

    def walk(self, uri: str = ".") -> Iterator[tuple[str, Node]]:
        node = self.find(uri)
        if node is None:
            return
        stack = [(uri.rstrip("/"), node)]
        while stack:
            path, n = stack.pop()
            yield path, n
            stack.extend((f"{path}/{k}", c) for k, c in reversed(n.children.items()))

    def put(self, uri: str, value: str | bytes, access: AccessType = READ_ONLY) -> None:
        """Build-time: a leaf and any interior nodes above it (access GET on those)."""
        parts = split(uri)
        if not parts:
            raise ValueError(f"not a node URI: {uri!r}")
        node = self.root
        for p in parts[:-1]:
            node = node.children.setdefault(p, Node(access=AccessType.GET | AccessType.ADD))
        node.children[parts[-1]] = Node("chr", value, access)


@dataclass(frozen=True, slots=True)
class AppAuth:
    """One ./DMAcc/<x>/AppAuth/<x> entry: AAuthLevel CLCRED (our credentials to the server),
    SRVCRED (the server's to us) or HTTP (transport credentials: HTTP-BASIC or HTTP-DIGEST)."""

    level: str
    type: str
    name: str
    secret: str
    data: bytes = b""  # the nonce to use next


def dm_account(
    tree: Tree,
    x: str,
    *,
    server_id: str,
    addr: str,
    auth: tuple[AppAuth, ...],
    name: str = "",
    pref: str = "",
) -> None:
    """Adds ./DMAcc/<x> (DM StdObj §7.1.3) with its AppAddr and AppAuth entries."""
    base = f"./DMAcc/{x}"
    rw = AccessType.GET | AccessType.REPLACE
    tree.put(f"{base}/AppID", "w7")
    tree.put(f"{base}/ServerID", server_id)
    tree.put(f"{base}/Name", name, rw)
    tree.put(f"{base}/AppAddr/1/Addr", addr, rw)
    tree.put(f"{base}/AppAddr/1/AddrType", "URI")
    tree.put(f"{base}/AAuthPref", pref or (auth[0].type if auth else ""), rw)
    for i, a in enumerate(auth, 1):
        entry = f"{base}/AppAuth/{i}"
        tree.put(f"{entry}/AAuthLevel", a.level)
        tree.put(f"{entry}/AAuthType", a.type, rw)
        tree.put(f"{entry}/AAuthName", a.name, rw)
        tree.put(f"{entry}/AAuthSecret", a.secret, WRITE_ONLY)  # never read back
        tree.put(f"{entry}/AAuthData", a.data, WRITE_ONLY)


def find_auth(tree: Tree, x: str, level: str) -> str | None:
    """The ./DMAcc/<x>/AppAuth/<y> URI with this AAuthLevel, if any."""
    base = tree.find(f"./DMAcc/{x}/AppAuth")
    for y, entry in base.children.items() if base else ():
        lvl = entry.children.get("AAuthLevel")
        if lvl is not None and lvl.value == level:
            return f"./DMAcc/{x}/AppAuth/{y}"
    return None


def standard_tree(
    *, dev_id: str, man: str, mod: str, lang: str = "en", sw_v: str = "", hw_v: str = ""
) -> Tree:
    """DevInfo (DM StdObj §5.3) and DevDetail (§5.4) of a DM 1.2 client."""
    tree = Tree()
    for k, v in (("DevId", dev_id), ("Man", man), ("Mod", mod), ("DmV", "1.2"), ("Lang", lang)):
        tree.put(f"./DevInfo/{k}", v)
    for k, v in (
        ("DevTyp", "smartphone"),
        ("OEM", man),
        ("FwV", ""),
        ("SwV", sw_v),
        ("HwV", hw_v),
        ("LrgObj", "false"),
        ("URI/MaxDepth", "0"),
        ("URI/MaxTotLen", "0"),
        ("URI/MaxSegLen", "0"),
    ):
        tree.put(f"./DevDetail/{k}", v)
    tree.root.children["DMAcc"] = Node(access=AccessType.GET | AccessType.ADD)
    return tree


DEVINFO_LEAVES: Final = ("DevId", "Man", "Mod", "DmV", "Lang")
