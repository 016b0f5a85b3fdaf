"""What state a stack service is in, and refusing ports that another process already serves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from infra.stack.errors import PortTakenError
from infra.stack.ports import Address, port_open, port_owner
from infra.stack.process import cmdline

# running: our process is alive and its port answers; unresponsive: alive but the port does not
# answer (starting, or wedged); foreign: the port answers but not from a process we started.
State = Literal["running", "stopped", "unresponsive", "foreign"]


@dataclass(frozen=True)
class ServiceStatus:
    """One line of `soma stack status`."""

    name: str
    state: State
    pid: int | None
    address: Address
    data_dir: Path
    detail: str = ""

    def line(self) -> str:
        pid = f"pid={self.pid}" if self.pid else "pid=-"
        parts = [f"{self.name:<10}", f"{self.state:<12}", f"{pid:<11}", f"{self.address!s:<16}"]
        parts.append(f"data={self.data_dir}")
        if self.detail:
            parts.append(self.detail)
        if self.state == "foreign":
            parts.append("(port served by a process this stack did not start)")
        return "  ".join(parts)


def classify(our_pid: int | None, address: Address) -> tuple[State, int | None]:
    """The state of a service from our pid (None when not ours or dead) and its port."""
    answering = port_open(address)
    if our_pid is not None:
        return ("running" if answering else "unresponsive"), our_pid
    if answering:
        return "foreign", port_owner(address.port)
    return "stopped", None


def refuse_foreign(service: str, address: Address, setting: str) -> None:
    """Raise PortTakenError when address answers but the service there is not ours.

    Called only after checking that our own process is not running, so an answering port
    means a stray daemon (the distribution's own redis/postgres, another stack, a container).
    """
    if not port_open(address):
        return
    owner = port_owner(address.port)
    who = f"pid {owner} ({cmdline(owner)[:120]})" if owner else "a process we cannot see"
    raise PortTakenError(
        f"{service}: {address} is already served by {who}, which this stack did not start. "
        f"Stop that process, or point {setting} at a free port."
    )
