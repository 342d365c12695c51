"""Who is on the other end of a local connection to the SCWS Gateway (Linux).

Loopback TCP: the peer's socket is the line of /proc/net/tcp (or tcp6) whose local address is
the connection's remote end and whose remote address is ours; that line gives the owner's uid
and the socket's inode. The process is the one with a descriptor on `socket:[inode]` under
/proc/<pid>/fd (processes seen recently are looked at first). Its executable is /proc/<pid>/exe,
hashed (SHA-256 and SHA-1) through that link, so the file hashed is the one the process runs.

Unix-domain socket: SO_PEERCRED gives pid, uid and gid from the kernel at connect time.

Limits, plainly:
- A pid can be reused: between the connection and the lookup a client can exit and another
  process take its pid. The socket inode is checked in the new process's descriptors, so a
  wrong match needs the same inode too; but a descriptor passed to (or inherited by) another
  process makes that process a holder as well: the first holder found is named.
- An executable can be replaced on disk while its process runs: the hash is taken through
  /proc/<pid>/exe, the running file; a program that loads code (an interpreter, a plug-in, a
  ptrace'd process) is identified by its executable only.
- Without privileges (root, or CAP_SYS_PTRACE), other users' /proc/<pid>/fd and exe cannot be
  read: their connections show a uid but no pid or hash, so only uid and "any" rules match.
- Connections from other hosts are never local applications: they have no identity."""

from __future__ import annotations

import atexit
import hashlib
import ipaddress
import os
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["PeerIdentity", "identity_of_pid", "tcp_peer", "unix_peer"]

PROC: Final = Path("/proc")
_RECENT: Final = 32
_HASH_CACHE: Final = 256


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What the gateway knows of a local client. Any field may be None when it cannot be seen
    (see the module's limits); `how` says where the identity came from."""

    uid: int | None = None
    pid: int | None = None
    exe: str | None = None
    sha256: bytes | None = None
    sha1: bytes | None = None
    how: str = "unknown"

    def describe(self) -> str:
        parts = [f"uid {self.uid}" if self.uid is not None else "uid ?"]
        if self.pid is not None:
            parts.append(f"pid {self.pid}")
        if self.exe is not None:
            parts.append(self.exe)
        if self.sha256 is not None:
            parts.append(f"sha256:{self.sha256.hex()[:16]}...")
        return f"{' '.join(parts)} ({self.how})"


class _Hashes:
    """SHA-256 and SHA-1 of executables, with the path they were first seen at, kept per
    (device, inode, size, mtime): a file replaced on disk is a new entry."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[int, int, int, int], tuple[bytes, bytes, str]] = (
            OrderedDict()
        )

    def of(self, path: str, name: Callable[[], str]) -> tuple[bytes, bytes, str] | None:
        """`path` may be /proc/<pid>/exe (the file the process runs); `name` gives the path to
        show, asked only when the file is new here."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        hit = self._cache.get((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        if hit is not None:
            return hit
        try:
            shown = name()
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                h256, h1 = hashlib.sha256(), hashlib.sha1()  # SEAC names apps by SHA-1 too
                while chunk := f.read(1 << 20):
                    h256.update(chunk)
                    h1.update(chunk)
        except OSError:
            return None
        out = (h256.digest(), h1.digest(), shown)
        self._cache[key] = out
        if len(self._cache) > _HASH_CACHE:
            self._cache.popitem(last=False)
        return out


_hashes = _Hashes()
_recent: OrderedDict[int, int] = OrderedDict()
"""Processes that connected lately -> the descriptor number their socket had (a client's next
socket often gets the same number back)."""


def _hex_address(host: str, port: int) -> tuple[str, str]:
    """The /proc/net file and the address as it is written there (host byte order words)."""
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address):  # IPv4-mapped ones too: the socket is AF_INET6
        p = ip.packed
        words = "".join(f"{int.from_bytes(p[i : i + 4], 'little'):08X}" for i in range(0, 16, 4))
        return "tcp6", f"{words}:{port:04X}"
    return "tcp", f"{int.from_bytes(ip.packed, 'little'):08X}:{port:04X}"


_NETLINK_SOCK_DIAG: Final = 4
_SOCK_DIAG_BY_FAMILY: Final = 20
_NLM_F_REQUEST: Final = 1
_NLMSG_ERROR: Final = 2
_NOCOOKIE: Final = 0xFFFFFFFF
_NLMSGHDR: Final = struct.Struct("=IHHII")
_DIAG_REQ: Final = struct.Struct("=BBBBI")
"""inet_diag_req_v2 up to its inet_diag_sockid (linux/inet_diag.h)."""
_SOCKID: Final = struct.Struct(">HH16s16s")
_SOCKID_TAIL: Final = struct.Struct("=III")
"""idiag_if and idiag_cookie[2] (host order)."""
_DIAG_MSG_UID: Final = struct.Struct("=II")
"""idiag_uid, idiag_inode at offset 64 of inet_diag_msg."""


_netlink: socket.socket | None = None
"""One sock_diag socket for the process, reused (requests are answered in order, one at a
time: the gateway asks from its event loop thread only)."""


def _sock_diag_owner(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """(uid, inode) of the peer socket through sock_diag netlink (linux/sock_diag.h): an exact
    lookup of one socket by its four-tuple, whatever the number of sockets on the host."""
    src, dst = ipaddress.ip_address(remote[0]), ipaddress.ip_address(local[0])
    if src.version != dst.version:
        return None
    family = socket.AF_INET if src.version == 4 else socket.AF_INET6
    sockid = _SOCKID.pack(
        remote[1], local[1], src.packed.ljust(16, b"\0"), dst.packed.ljust(16, b"\0")
    )
    body = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    body += _SOCKID_TAIL.pack(0, _NOCOOKIE, _NOCOOKIE)
    message = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    global _netlink
    try:
        if _netlink is None:
            _netlink = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
            atexit.register(_netlink.close)
        _netlink.sendto(message + body, (0, 0))
        answer = _netlink.recv(8192)
    except OSError:
        if _netlink is not None:
            _netlink.close()
            _netlink = None
        return None
    if len(answer) < _NLMSGHDR.size + 72:
        return None
    _, kind, _, _, _ = _NLMSGHDR.unpack_from(answer)
    if kind != _SOCK_DIAG_BY_FAMILY:
        return None  # NLMSG_ERROR: no such socket (gone already), or not allowed
    uid, inode = _DIAG_MSG_UID.unpack_from(answer, _NLMSGHDR.size + 64)
    return uid, inode


def _socket_owner(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """(uid, inode) of the peer socket of our connection local <-> remote: sock_diag netlink,
    else the /proc/net table."""
    found = _sock_diag_owner(local, remote)
    if found is not None:
        return found
    table, theirs = _hex_address(remote[0], remote[1])
    _, ours = _hex_address(local[0], local[1])
    try:
        text = (PROC / "net" / table).read_text()
    except OSError:
        return None
    needle = f" {theirs} {ours} "
    at = text.find(needle)
    if at < 0:
        return None
    end = text.find("\n", at)
    fields = text[at : end if end >= 0 else len(text)].split()
    # local rem st tx:rx tr:when retrnsmt uid timeout inode
    try:
        return int(fields[6]), int(fields[8])
    except (IndexError, ValueError):
        return None


def _holds(pid: int, target: str, hint: int) -> int | None:
    """The descriptor of process `pid` that is `target` (socket:[inode]), or None."""
    fd_dir = f"/proc/{pid}/fd"
    if hint >= 0:
        try:
            if os.readlink(f"{fd_dir}/{hint}") == target:
                return hint
        except OSError:
            pass
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return None
    # A new connection's descriptor is most often the process's newest: look from the top.
    for name in sorted(names, key=int, reverse=True):
        try:
            if os.readlink(f"{fd_dir}/{name}") == target:
                return int(name)
        except OSError:
            continue
    return None


def _pid_of_inode(inode: int, uid: int) -> int | None:
    target = f"socket:[{inode}]"
    for pid in reversed(_recent):
        fd = _holds(pid, target, _recent[pid])
        if fd is not None:
            _recent[pid] = fd
            _recent.move_to_end(pid)
            return pid
    try:
        entries = os.scandir(PROC)
    except OSError:
        return None
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != uid:
                    continue
            except OSError:
                continue
            pid = int(entry.name)
            if pid in _recent:
                continue
            fd = _holds(pid, target, -1)
            if fd is not None:
                _recent[pid] = fd
                if len(_recent) > _RECENT:
                    _recent.popitem(last=False)
                return pid
    return None


def identity_of_pid(pid: int, uid: int | None = None, how: str = "pid") -> PeerIdentity:
    """The identity of process `pid`: its uid (unless given), executable and its hashes."""
    if uid is None:
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            return PeerIdentity(pid=pid, how=how)
    exe = f"/proc/{pid}/exe"
    hashes = _hashes.of(exe, lambda: os.readlink(exe))
    if hashes is None:
        try:
            return PeerIdentity(uid=uid, pid=pid, exe=os.readlink(exe), how=how)
        except OSError:
            return PeerIdentity(uid=uid, pid=pid, how=how)
    return PeerIdentity(uid, pid, hashes[2], hashes[0], hashes[1], how)


def hashes_of_file(path: str) -> tuple[bytes, bytes] | None:
    """(SHA-256, SHA-1) of an executable file, as the gateway would compute them."""
    found = _hashes.of(path, lambda: path)
    return None if found is None else (found[0], found[1])


def tcp_peer(
    local: tuple[str, int], remote: tuple[str, int], *, need_exe: bool = True
) -> PeerIdentity:
    """The local application at `remote` connected to us at `local`. Not loopback: no
    identity. `need_exe` False stops at the uid (no process search, no hashing)."""
    try:
        if not ipaddress.ip_address(remote[0]).is_loopback and not _mapped_loopback(remote[0]):
            return PeerIdentity(how="not a local connection")
    except ValueError:
        return PeerIdentity(how="not an IP connection")
    owner = _socket_owner(local, remote)
    if owner is None:
        return PeerIdentity(how="socket not found in /proc/net")
    uid, inode = owner
    if not need_exe:
        return PeerIdentity(uid=uid, how="/proc/net/tcp")
    pid = _pid_of_inode(inode, uid)
    if pid is None:
        return PeerIdentity(uid=uid, how="/proc/net/tcp; process not visible")
    return identity_of_pid(pid, uid, "/proc/net/tcp")


def _mapped_loopback(host: str) -> bool:
    ip = ipaddress.ip_address(host)
    return isinstance(ip, ipaddress.IPv6Address) and bool(
        ip.ipv4_mapped and ip.ipv4_mapped.is_loopback
    )


_UCRED: Final = struct.Struct("3i")


def unix_peer(sock: socket.socket, *, need_exe: bool = True) -> PeerIdentity:
    """The peer of a Unix-domain stream socket, from SO_PEERCRED (pid, uid as the kernel saw
    them at connect time)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return PeerIdentity(how="SO_PEERCRED unavailable")
    pid, uid, _gid = _UCRED.unpack(raw)
    if not need_exe or pid <= 0:
        return PeerIdentity(uid=uid, pid=pid if pid > 0 else None, how="SO_PEERCRED")
    return identity_of_pid(pid, uid, "SO_PEERCRED")
