"""Binaries the stack runs: find them, and install the Debian packages when they are missing."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from infra.stack.errors import StackError
from infra.stack.process import run

log = logging.getLogger(__name__)

_PG_ROOT = Path("/usr/lib/postgresql")


def postgres_bin_dir() -> Path | None:
    """The bin directory of the newest installed PostgreSQL server (Debian layout), or None."""
    found = [p.parent for p in _PG_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    if not found:
        return None
    return max(found, key=lambda bin_dir: int(bin_dir.parent.name))


def ensure_debian_packages() -> None:
    """Install redis-server, postgresql and prometheus (with promtool) with apt-get, only when
    their binaries are missing."""
    missing = []
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if postgres_bin_dir() is None:
        missing.append("postgresql")
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        missing.append("prometheus")
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(
            f"missing packages {missing}: run `sudo apt-get install -y {' '.join(missing)}`, "
            "or run `soma stack up` as root"
        )
    log.info("installing %s with apt-get (one-time)", " ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update"], "apt-get update", timeout=600, env=env)
    run(["apt-get", "install", "-y", *missing], "apt-get install", timeout=1200, env=env)


def require_binary(name: str, install_hint: str) -> str:
    """The path of an executable on PATH; the error says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` is not on PATH: {install_hint}")
    return path


def require_java() -> str:
    """Kafka 4.x brokers need Java 17 or newer."""
    return require_binary("java", "`apt-get install -y openjdk-17-jre-headless`")


def require_maven() -> str:
    """Maven resolves Kafka's jars from Maven Central (infra/kafka/pom.xml)."""
    return require_binary("mvn", "`apt-get install -y maven`")
