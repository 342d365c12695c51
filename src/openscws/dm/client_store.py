"""The DM client's management tree on disk: one JSON document holding every node (URI, format,
access types, MIME type, value), written atomically (a private temporary file in the same
directory, fsync, rename) with mode 0600, since it holds the account secrets. Binary values
are kept base64-encoded. The file is the device's state between sessions: a session's nonce
rollovers and the server's Replace/Add/Delete land here when the session ends.

Also here: `add_account`, which fills ./DMAcc/<x> from the settings of `openscws dm client
init` (OMA-TS-DM_StdObj V1.2 §7.1.3), with the TLS settings under ./DMAcc/<x>/Ext/TLS."""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from openscws.dm.transport import TlsSettings
from openscws.dm.tree import (
    WRITE_ONLY,
    AccessType,
    AppAuth,
    Node,
    Tree,
    dm_account,
    find_auth,
    split,
    standard_tree,
)
from openscws.errors import ConfigError

__all__ = ["AccountSettings", "account_tls", "add_account", "load", "save", "transport_auth"]

FORMAT: Final = "openscws-dm-tree/1"
TLS_LEAVES: Final = ("MinVersion", "MaxVersion", "Suites", "PskIdentity", "PskKey", "CaFile")


def _dump(tree: Tree) -> dict[str, Any]:
    nodes = []
    for uri, node in tree.walk("."):
        if uri == ".":
            continue
        value: Any = node.value
        if isinstance(value, bytes):
            value = {"b64": base64.b64encode(value).decode("ascii")}
        nodes.append(
            {
                "uri": uri,
                "format": node.format,
                "access": [a.name for a in AccessType if a in node.access],
                "type": node.type,
                "value": value,
            }
        )
    return {"format": FORMAT, "nodes": nodes}


def save(tree: Tree, path: Path) -> None:
    """Writes the tree atomically (see the module text)."""
    data = json.dumps(_dump(tree), indent=1).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dmtree-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Tree:
    """The tree saved at `path`; ConfigError when it is missing or not ours."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no DM client tree (run `openscws dm client init`)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a DM client tree: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a DM client tree ({FORMAT})")
    tree = Tree()
    try:
        for item in doc["nodes"]:
            parts = split(item["uri"])
            if not parts:
                raise ValueError(f"bad node URI {item['uri']!r}")
            parent = tree.find("/".join(parts[:-1]))
            if parent is None:
                raise ValueError(f"{item['uri']} comes before its parent")
            value = item["value"]
            if isinstance(value, dict):
                value = base64.b64decode(value["b64"], validate=True)
            elif not isinstance(value, str):
                raise ValueError(f"{item['uri']}: value is not text or b64")
            access = AccessType(0)
            for name in item["access"]:
                access |= AccessType[name]
            parent.children[parts[-1]] = Node(item["format"], value, access, item["type"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ConfigError(f"{path}: damaged DM client tree: {exc}") from None
    return tree


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """One DM account as `openscws dm client init` takes it."""

    server_id: str
    server_url: str
    client_name: str
    client_secret: str
    client_auth: str = "DIGEST"  # BASIC, DIGEST or HMAC (AAuthType)
    server_secret: str = ""
    server_auth: str = "DIGEST"
    http_auth: str = ""  # HTTP-BASIC or HTTP-DIGEST, or "" for none
    http_name: str = ""
    http_secret: str = ""
    client_cert_pem: bytes = b""
    client_key_pem: bytes = b""
    tls: TlsSettings = field(default_factory=TlsSettings)


def new_tree(dev_id: str, man: str = "openscws", mod: str = "virtual terminal") -> Tree:
    return standard_tree(dev_id=dev_id, man=man, mod=mod)


def add_account(tree: Tree, x: str, acc: AccountSettings) -> None:
    """./DMAcc/<x> with CLCRED, SRVCRED (when a server secret is given), the HTTP-level
    credentials and the TLS settings; replaces an account of that name."""
    if not x or "/" in x:
        raise ConfigError(f"account name {x!r}: one node name")
    root = tree.find("./DMAcc")
    if root is None:
        raise ConfigError("the tree has no ./DMAcc")
    root.children.pop(x, None)
    entries = [AppAuth("CLCRED", acc.client_auth, acc.client_name, acc.client_secret)]
    if acc.server_secret:
        entries.append(AppAuth("SRVCRED", acc.server_auth, acc.server_id, acc.server_secret))
    if acc.http_auth:
        if acc.http_auth not in ("HTTP-BASIC", "HTTP-DIGEST"):
            raise ConfigError(f"HTTP auth {acc.http_auth!r}: HTTP-BASIC or HTTP-DIGEST")
        entries.append(AppAuth("HTTP", acc.http_auth, acc.http_name, acc.http_secret))
    if acc.client_cert_pem:
        # TLS client authentication: the key is the secret, the chain the data.
        key = acc.client_key_pem.decode("ascii", "strict")
        entries.append(AppAuth("HTTP", "TRANSPORT", "x509", key, acc.client_cert_pem))
    dm_account(tree, x, server_id=acc.server_id, addr=acc.server_url, auth=tuple(entries))
    base = f"./DMAcc/{x}/Ext/TLS"
    rw = AccessType.GET | AccessType.REPLACE
    t = acc.tls
    tree.put(f"{base}/MinVersion", t.min_version, rw)
    tree.put(f"{base}/MaxVersion", t.max_version, rw)
    tree.put(f"{base}/Suites", t.suites, rw)
    tree.put(f"{base}/PskIdentity", t.psk_identity, rw)
    tree.put(f"{base}/PskKey", t.psk_key.hex(), WRITE_ONLY)
    tree.put(f"{base}/CaFile", str(t.ca_file) if t.ca_file else "", rw)
    tree.put(f"{base}/CheckHostname", "true" if t.check_hostname else "false", rw)


def _text(tree: Tree, uri: str) -> str:
    node = tree.find(uri)
    if node is None:
        return ""
    v = node.value
    return v.decode() if isinstance(v, bytes) else v


def account_tls(tree: Tree, x: str) -> TlsSettings:
    """The TLS settings of ./DMAcc/<x>, with the X.509 client credential if it has one."""
    base = f"./DMAcc/{x}/Ext/TLS"
    cert, key = b"", b""
    for y in _auth_entries(tree, x):
        if _text(tree, f"{y}/AAuthType") == "TRANSPORT":
            node = tree.find(f"{y}/AAuthData")
            raw = node.value if node is not None else b""
            cert = raw if isinstance(raw, bytes) else raw.encode()
            key = _text(tree, f"{y}/AAuthSecret").encode()
    ca = _text(tree, f"{base}/CaFile")
    try:
        psk = bytes.fromhex(_text(tree, f"{base}/PskKey"))
    except ValueError:
        raise ConfigError(f"{base}/PskKey is not hexadecimal") from None
    return TlsSettings(
        min_version=_text(tree, f"{base}/MinVersion") or "1.1",
        max_version=_text(tree, f"{base}/MaxVersion") or "1.2",
        suites=_text(tree, f"{base}/Suites"),
        psk_identity=_text(tree, f"{base}/PskIdentity"),
        psk_key=psk,
        ca_file=Path(ca) if ca else None,
        client_cert_pem=cert,
        client_key_pem=key,
        check_hostname=_text(tree, f"{base}/CheckHostname") != "false",
    )


def _auth_entries(tree: Tree, x: str) -> list[str]:
    base = tree.find(f"./DMAcc/{x}/AppAuth")
    return [f"./DMAcc/{x}/AppAuth/{y}" for y in (base.children if base else {})]


def transport_auth(tree: Tree, x: str) -> tuple[str, str, str] | None:
    """(AAuthType, name, secret) of the account's HTTP-BASIC or HTTP-DIGEST entry."""
    for y in _auth_entries(tree, x):
        kind = _text(tree, f"{y}/AAuthType")
        if _text(tree, f"{y}/AAuthLevel") == "HTTP" and kind in ("HTTP-BASIC", "HTTP-DIGEST"):
            return kind, _text(tree, f"{y}/AAuthName"), _text(tree, f"{y}/AAuthSecret")
    return None


def accounts(tree: Tree) -> list[str]:
    node = tree.find("./DMAcc")
    return list(node.children) if node is not None else []


def account_of_server(tree: Tree, server_id: str) -> str | None:
    """The account whose ServerID is `server_id` and that can check a Package #0 (SRVCRED)."""
    for x in accounts(tree):
        if _text(tree, f"./DMAcc/{x}/ServerID") == server_id and find_auth(tree, x, "SRVCRED"):
            return x
    return None
