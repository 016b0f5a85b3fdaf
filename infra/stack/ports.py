"""TCP addresses of the stack: parsing, probing, and finding who listens on a port."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"  # TCP state code for LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Address:
    """A host and port, printed as `host:port`."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, default_port: int) -> Address:
    """`host:port` (first entry of a comma list, as bootstrap strings are) → Address."""
    first = text.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep:
        return Address(first, default_port)
    return Address(host.strip("[]"), int(port))


def port_open(address: Address, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on the address."""
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> int | None:
    """The pid listening on a local TCP port, or None when unknown.

    Read from /proc rather than via psutil, so the runner needs no extra dependency; we run as
    root here, so every process's fd table is readable.
    """
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(entry.name)
        except OSError:
            continue  # the process exited or its fds are not ours to read
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes
