"""Per-install secrets: random values generated once, kept owner-only in the stack's state dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from soma.errors import ConfigError

SECRETS_DIR = "secrets"


def secret_path(stack_dir: Path, name: str) -> Path:
    """Where the per-install secret `name` lives (`<stack_dir>/secrets/<name>`)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"not a secret name: {name!r}")
    return stack_dir / SECRETS_DIR / name


def read_secret(stack_dir: Path, name: str) -> str | None:
    """The secret's value, or None when it was never generated."""
    path = secret_path(stack_dir, name)
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not value:
        raise ConfigError(f"{path} is empty: delete it and run `make up` to generate it again")
    return value


def ensure_secret(stack_dir: Path, name: str, nbytes: int = 32) -> str:
    """The secret's value, generating it first (owner-only file in an owner-only dir) if absent.

    O_EXCL makes two processes racing at first start agree on one value: the loser reads the
    winner's file.
    """
    existing = read_secret(stack_dir, name)
    if existing is not None:
        return existing
    path = secret_path(stack_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raced = read_secret(stack_dir, name)
        assert raced is not None
        return raced
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


INTERNAL_TOKEN = "internal-token"
INTERNAL_HEADER = "X-Soma-Internal-Token"


def internal_token(stack_dir: Path) -> str:
    """The credential the gateway shows flow workers (they answer state reads to no one else)."""
    return ensure_secret(stack_dir, INTERNAL_TOKEN)
