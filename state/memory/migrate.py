"""Schema migrations of the memory tables, applied with yoyo-migrations from `migrations/`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LOCK_TIMEOUT_S = 60  # two processes upgrading at once: the second waits, then finds nothing to do


@dataclass(frozen=True)
class MigrationReport:
    """What `upgrade` did on one database."""

    database: str
    applied: tuple[str, ...]
    already: tuple[str, ...]


def yoyo_uri(dsn: str) -> str:
    """yoyo's URI for a libpq DSN (URL or key=value form), using the psycopg 3 driver."""
    info = conninfo_to_dict(dsn)
    user = quote(str(info.get("user") or ""), safe="")
    password = quote(str(info.get("password") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(info.get("host") or "127.0.0.1")
    port = str(info.get("port") or 5432)
    dbname = quote(str(info.get("dbname") or ""), safe="")
    return f"postgresql+psycopg://{auth}{host}:{port}/{dbname}"


def upgrade(dsn: str) -> MigrationReport:
    """Apply every pending migration under yoyo's lock; harmless when up to date."""
    backend = get_backend(yoyo_uri(dsn))
    try:
        migrations = read_migrations(str(MIGRATIONS_DIR))
        with backend.lock(timeout=LOCK_TIMEOUT_S):
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        pending_ids = {m.id for m in pending}
        return MigrationReport(
            database=str(conninfo_to_dict(dsn).get("dbname")),
            applied=tuple(m.id for m in pending),
            already=tuple(m.id for m in migrations if m.id not in pending_ids),
        )
    finally:
        backend.connection.close()


def pending(dsn: str) -> list[str]:
    """Ids of migrations not yet applied to the database."""
    backend = get_backend(yoyo_uri(dsn))
    try:
        return [m.id for m in backend.to_apply(read_migrations(str(MIGRATIONS_DIR)))]
    finally:
        backend.connection.close()
