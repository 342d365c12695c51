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

import hashlib
import ipaddress
import os
import socket
import struct
from collections import OrderedDict
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
    """SHA-256 and SHA-1 of executables, kept per (device, inode, size, mtime)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[int, int, int, int], tuple[bytes, bytes]] = OrderedDict()

    def of(self, path: str) -> tuple[bytes, bytes] | None:
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
                h256, h1 = hashlib.sha256(), hashlib.sha1()
                while chunk := f.read(1 << 20):
                    h256.update(chunk)
                    h1.update(chunk)
        except OSError:
            return None
        out = (h256.digest(), h1.digest())
        self._cache[key] = out
        if len(self._cache) > _HASH_CACHE:
            self._cache.popitem(last=False)
        return out


_hashes = _Hashes()
_recent: OrderedDict[int, None] = OrderedDict()


def _hex_address(host: str, port: int) -> tuple[str, str]:
    """The /proc/net file and the address as it is written there (host byte order words)."""
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address):  # IPv4-mapped ones too: the socket is AF_INET6
        p = ip.packed
        words = "".join(f"{int.from_bytes(p[i : i + 4], 'little'):08X}" for i in range(0, 16, 4))
        return "tcp6", f"{words}:{port:04X}"
    return "tcp", f"{int.from_bytes(ip.packed, 'little'):08X}:{port:04X}"


def _socket_owner(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """(uid, inode) of the peer socket of our connection local <-> remote, from /proc/net."""
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


def _holds(pid: int, target: str) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"{fd_dir}/{name}") == target:
                return True
        except OSError:
            continue
    return False


def _pid_of_inode(inode: int, uid: int) -> int | None:
    target = f"socket:[{inode}]"
    for pid in reversed(_recent):
        if _holds(pid, target):
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
            if pid not in _recent and _holds(pid, target):
                _recent[pid] = None
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
    try:
        exe: str | None = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return PeerIdentity(uid=uid, pid=pid, how=how)
    hashes = _hashes.of(f"/proc/{pid}/exe")
    if hashes is None:
        return PeerIdentity(uid=uid, pid=pid, exe=exe, how=how)
    return PeerIdentity(uid, pid, exe, hashes[0], hashes[1], how)


def hashes_of_file(path: str) -> tuple[bytes, bytes] | None:
    """(SHA-256, SHA-1) of an executable file, as the gateway would compute them."""
    return _hashes.of(path)


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
