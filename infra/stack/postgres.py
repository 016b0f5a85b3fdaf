"""PostgreSQL in the stack: our own cluster under stack_dir, run by the postgres user, own port."""

from __future__ import annotations

import getpass
import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from infra.stack.apt import postgres_bin_dir
from infra.stack.errors import StackError
from infra.stack.ports import Address
from infra.stack.process import live_pid, run, tail, terminate, wait_until
from infra.stack.service import ServiceStatus, classify, refuse_foreign
from soma.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# initdb and postgres refuse to run as root, so as root we run them as the distribution's user.
_OS_USER = "postgres" if os.geteuid() == 0 else getpass.getuser()


@dataclass(frozen=True)
class PostgresPaths:
    home: Path  # owned by the postgres user: data, socket and log live below it
    data: Path
    socket_dir: Path
    log: Path
    pidfile: Path

    @classmethod
    def of(cls, settings: Settings) -> PostgresPaths:
        home = settings.stack_dir / "postgres"
        return cls(
            home=home,
            data=home / "data",
            socket_dir=home / "run",
            log=home / "postgres.log",
            pidfile=home / "data" / "postmaster.pid",
        )


@dataclass(frozen=True)
class Database:
    """The role, password and databases the settings DSNs expect to find."""

    address: Address
    user: str
    password: str
    dbname: str
    replica_dbname: str | None = None  # None: the replica DSN points at another server or role

    @classmethod
    def of(cls, settings: Settings) -> Database:
        info = conninfo_to_dict(settings.postgres_dsn)
        missing = [key for key in ("user", "password", "dbname") if not info.get(key)]
        if missing:
            raise StackError(f"SOMA_POSTGRES_DSN must name {missing} for the local stack to create")
        address = Address(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
        replica = conninfo_to_dict(settings.replica_postgres_dsn())
        replica_address = Address(
            str(replica.get("host") or "127.0.0.1"), int(replica.get("port") or 5432)
        )
        # Only a replica on our own cluster and role is ours to create.
        ours = replica_address == address and replica.get("user") == info["user"]
        replica_dbname = str(replica["dbname"]) if ours and replica.get("dbname") else None
        return cls(
            address, str(info["user"]), str(info["password"]), str(info["dbname"]), replica_dbname
        )


def postgres_pid(settings: Settings) -> int | None:
    paths = PostgresPaths.of(settings)
    # The data directory on the postmaster's command line tells our cluster from any other.
    return live_pid(paths.pidfile, str(paths.data))


def start_postgres(settings: Settings) -> int:
    """Init (once) and start our cluster, then make sure the DSN's role and database exist."""
    paths, db = PostgresPaths.of(settings), Database.of(settings)
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise StackError("postgres: no server in /usr/lib/postgresql: apt-get install postgresql")
    pid = postgres_pid(settings)
    if pid is None:
        refuse_foreign("postgres", db.address, "SOMA_POSTGRES_DSN")
        _prepare_dirs(paths)
        if not (paths.data / "PG_VERSION").is_file():
            log.info("postgres: initdb %s (%s)", paths.data, bin_dir.parent.name)
            run(
                _as_owner([str(bin_dir / "initdb"), "-D", str(paths.data), "-U", _OS_USER,
                           "-E", "UTF8", "--no-locale",
                           "--auth-local=peer", "--auth-host=scram-sha-256"]),
                "postgres initdb", cwd=paths.home,
            )  # fmt: skip
        _write_config(paths, db.address)
        run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-l", str(paths.log),
                       "-w", "-t", str(int(READY_TIMEOUT_S)), "start"]),
            "pg_ctl start", timeout=READY_TIMEOUT_S + 30, cwd=paths.home,
        )  # fmt: skip
        pid = postgres_pid(settings)
        if pid is None:
            raise StackError(f"postgres: not running after pg_ctl start; log:\n{tail(paths.log)}")
        log.info("postgres: started pid %d", pid)
    _ensure_role_and_database(bin_dir, paths, db)
    if not wait_until(lambda: select_one(settings), READY_TIMEOUT_S, interval=0.5):
        raise StackError(f"postgres: `SELECT 1` fails on {db.address}; log:\n{tail(paths.log)}")
    return pid


def stop_postgres(settings: Settings) -> bool:
    """Fast shutdown of our cluster; False when it was not running."""
    paths = PostgresPaths.of(settings)
    pid = postgres_pid(settings)
    bin_dir = postgres_bin_dir()
    if pid is None or bin_dir is None:
        return False
    try:
        run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(paths.data), "-m", "fast", "-w",
                       "-t", str(int(STOP_TIMEOUT_S)), "stop"]),
            "pg_ctl stop", timeout=STOP_TIMEOUT_S + 15, cwd=paths.home,
        )  # fmt: skip
    except StackError as exc:
        log.warning("postgres: %s; terminating pid %d", exc, pid)
        terminate(pid, 5.0)
    log.info("postgres: stopped pid %d", pid)
    return True


def select_one(settings: Settings) -> bool:
    try:
        with psycopg.connect(settings.postgres_dsn, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def postgres_status(settings: Settings) -> ServiceStatus:
    address = Database.of(settings).address
    state, pid = classify(postgres_pid(settings), address)
    bin_dir = postgres_bin_dir()
    detail = f"version={bin_dir.parent.name}" if bin_dir else ""
    return ServiceStatus("postgres", state, pid, address, PostgresPaths.of(settings).data, detail)


def _ensure_role_and_database(bin_dir: Path, paths: PostgresPaths, db: Database) -> None:
    # Idempotent; the password is reset to the DSN's on every `up`, so changing the DSN just works.
    # SQL goes through stdin so the password never shows on a command line.
    role = _ident(db.user)
    script = (
        "DO $$BEGIN\n"
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(db.user)}) THEN\n"
        f"    CREATE ROLE {role} LOGIN;\n"
        "  END IF;\n"
        "END$$;\n"
        f"ALTER ROLE {role} LOGIN PASSWORD {_literal(db.password)};\n"
    )
    for dbname in filter(None, (db.dbname, db.replica_dbname)):
        script += (
            f"SELECT {_literal(f'CREATE DATABASE {_ident(dbname)} OWNER {role}')}\n"
            f"  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {_literal(dbname)})\n"
            "\\gexec\n"
        )
    run(
        _as_owner([str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                   "-h", str(paths.socket_dir), "-p", str(db.address.port), "-d", "postgres"]),
        "postgres role/database setup", timeout=60, cwd=paths.home, stdin=script,
    )  # fmt: skip


def _prepare_dirs(paths: PostgresPaths) -> None:
    paths.socket_dir.mkdir(parents=True, exist_ok=True)
    paths.home.chmod(0o700)
    if os.geteuid() == 0:
        owner = pwd.getpwnam(_OS_USER)
        _require_traversable(paths.home.parent, owner.pw_uid)
        for path in (paths.home, paths.socket_dir):
            os.chown(path, owner.pw_uid, owner.pw_gid)


def _require_traversable(directory: Path, uid: int) -> None:
    """The postgres user must reach its cluster: every ancestor needs search permission."""
    for path in (directory, *directory.parents):
        stat = path.stat()
        if not (stat.st_mode & 0o001 or (stat.st_uid == uid and stat.st_mode & 0o100)):
            raise StackError(
                f"postgres: the {_OS_USER} user cannot enter {path} "
                f"(mode {stat.st_mode & 0o777:o}); "
                "set SOMA_STACK_DIR to a directory under /var/tmp, or `chmod o+x` it"
            )


def _write_config(paths: PostgresPaths, address: Address) -> None:
    """Our settings live in soma.conf, included from postgresql.conf, regenerated every start."""
    conf = paths.data / "soma.conf"
    conf.write_text(
        "# Generated by infra/stack/postgres.py on every start: edit that, not this.\n"
        f"listen_addresses = '{address.host}'\n"
        f"port = {address.port}\n"
        f"unix_socket_directories = '{paths.socket_dir}'\n"
        # Every test, worker and gateway holds a pool; the default 100 runs out under load tests.
        "max_connections = 200\n"
    )
    if os.geteuid() == 0:
        owner = pwd.getpwnam(_OS_USER)
        os.chown(conf, owner.pw_uid, owner.pw_gid)
    main = paths.data / "postgresql.conf"
    include = "include_if_exists = 'soma.conf'\n"
    if include not in main.read_text():
        with main.open("a") as handle:
            handle.write("\n" + include)


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", _OS_USER, "--", *argv] if os.geteuid() == 0 else argv


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # standard_conforming_strings is on since 9.1


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'
