"""How a stream worker names itself to Kafka, so its group membership points at its web endpoint."""

from __future__ import annotations

CLIENT_ID_PREFIX = "soma-worker@"


def worker_client_id(host: str, port: int) -> str:
    """The Kafka client id of a worker serving HTTP on host:port (`soma-worker@127.0.0.1:6066`)."""
    if not host or ":" in host or "@" in host:
        raise ValueError(f"worker host must be a hostname or IPv4 address, got {host!r}")
    if not 0 < port < 65536:
        raise ValueError(f"worker port out of range: {port}")
    return f"{CLIENT_ID_PREFIX}{host}:{port}"


def worker_url(client_id: str) -> str | None:
    """The base URL encoded in a worker's client id, or None for any other client."""
    if not client_id.startswith(CLIENT_ID_PREFIX):
        return None
    host, sep, port = client_id[len(CLIENT_ID_PREFIX) :].rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return f"http://{host}:{int(port)}"
