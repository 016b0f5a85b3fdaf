"""One settings object for every component, read from SOMA_* environment variables."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from psycopg.conninfo import make_conninfo
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from soma.errors import ConfigError
from soma.secrets import read_secret

REPLICA_DBNAME = "soma_replica"
# Secrets that were ever written in this repository: anyone can read them, so no mode accepts
# them (an old .env may still carry one).
PUBLIC_SECRETS = frozenset({"dev-insecure-change-me"})
# The per-install signing key `make up` generates (<stack_dir>/secrets/<name>, owner-only).
DEV_JWT_SECRET = "jwt-dev"
DEV_JWT_KID = "dev"
MIN_KEY_CHARS = 32


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to `SOMA_<NAME>` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="SOMA_", extra="ignore")

    mode: Literal["dev", "prod"] = "dev"
    namespace: str = "somastream"  # upstream name: memory namespace / universe default
    base_url: str | None = None  # SomaBrain HTTP API; unset means the Postgres memory backend

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""  # isolates a whole topic set (tests, side-by-side stacks)
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_dsn: str = "postgresql://soma:soma@127.0.0.1:5433/soma"
    # The replica a later flow copies acknowledged writes into; unset means the database
    # `soma_replica` beside postgres_dsn (the stack creates it, `soma db upgrade` migrates it).
    replica_dsn: str | None = None
    # A second SomaBrain the replication flow writes to instead of the replica database
    # (flows/replication.py); its links still go to the replica database.
    replica_base_url: str | None = None
    replica_api_token: SecretStr | None = None

    # Memory backends (state/memory/): SomaBrain when base_url is set, Postgres otherwise.
    api_token: SecretStr | None = None  # bearer token for SomaBrain (upstream: SOMA_API_TOKEN)
    memory_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0  # one backend call attempt
    memory_probe_timeout_s: Annotated[float, Field(gt=0, le=1.5)] = 1.0  # the fast probe
    memory_pool_max: Annotated[int, Field(ge=1, le=100)] = 10  # Postgres connections per process
    # Recall cache in Redis (state/recall_cache.py): answers live this long (0 turns it off);
    # every cache call, and a writer's generation bump, waits at most recall_cache_timeout_s.
    recall_cache_ttl_s: Annotated[int, Field(ge=0, le=86_400)] = 300
    recall_cache_timeout_s: Annotated[float, Field(gt=0, le=5)] = 0.25

    # HS256 signing keys by key id; the active kid signs, every listed kid verifies (rotation).
    # Unset in dev mode: the per-install key `make up` generated (DEV_JWT_SECRET).
    jwt_keys: dict[str, str] = Field(default_factory=dict)
    jwt_active_kid: str = DEV_JWT_KID
    jwt_issuer: str = "somastream"
    jwt_audience: str = "somastream"
    # Tokens whose exp is further away than this are refused, whoever signed them.
    jwt_max_ttl_s: int = 24 * 3600

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    max_body_bytes: int = 2 * 1024 * 1024
    max_batch_items: int = 500
    # Back-pressure (processors/backpressure.py): a tenant whose outbox holds more writes than
    # this gets 429 on memory writes; the gateway reads the outbox drain's backlog this often.
    outbox_tenant_limit: Annotated[int, Field(ge=1)] = 1000
    outbox_poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    produce_timeout_s: float = 5.0  # a 2xx waits for the broker ack at most this long
    health_timeout_s: float = 1.0

    # Bounded queues (docs/observability.md, "Bounded queues"): every in-memory queue of the
    # plane's processes has one of these bounds; reaching it pushes back, it never grows.
    # Requests one gateway process holds at once (each may buffer a body of max_body_bytes and
    # wait up to produce_timeout_s for the broker): 256 is ~50k requests/s at 5 ms each, far
    # above what one process serves here, and at most 512 MiB of bodies. Past it: 503 at once.
    gateway_max_in_flight: Annotated[int, Field(ge=1, le=100_000)] = 256
    # librdkafka's local queue of every EventProducer (gateway, flow workers, CLI), records sent
    # and not yet acknowledged. librdkafka's default (100,000 records, 1 GiB) would hold minutes
    # of gateway traffic during an outage. 10,000 is 20 full 500-item requests, twice what an
    # outage as long as the produce timeout (5 s) queues at the 1,000 events/s measured through
    # the gateway here (docs/flows.md), and 20 flow batches of 500 outputs. Full: the gateway
    # answers 503 + Retry-After at once, a flow retries its outputs with backoff.
    producer_queue_max_messages: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    # The same queue in bytes. It must hold the largest record any producer sends (a dead
    # letter: 4 MiB + headers, topics/registry.py), or that record could never be queued.
    producer_queue_max_kbytes: Annotated[int, Field(ge=5 * 1024, le=1024 * 1024)] = 64 * 1024
    # Faust's stream buffer of a flow worker (records fetched, not yet taken into a batch).
    # Faust pauses fetching a partition at 80 % of it and resumes at 40 %. 4096 (Faust's
    # default, with which the measured rates in docs/flows.md were reached) is 8 batches of
    # 500: the next batch is ready while one commits, and ~1.2 MiB at the usual 300 B records.
    flow_stream_buffer_max: Annotated[int, Field(ge=1, le=131_072)] = 4096
    # Bytes one fetch may return per partition (aiokafka's max_partition_fetch_bytes); the
    # fetcher holds at most one such response per owned partition. 1 MiB is one record of the
    # broker's default maximum size (a larger record is still returned alone, KIP-74).
    flow_fetch_max_bytes: Annotated[int, Field(ge=64 * 1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # Pre-fetch queue of the plane's own confluent-kafka consumers (the lag exporter's sampler,
    # the flows' lag probe, hand-over and DLQ reads), per consumer: librdkafka's default is
    # 64 MiB and 100,000 records per partition; they read small ranges and need no deep
    # pre-fetch (topics/consumers.py).
    consumer_queue_max_kbytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 8 * 1024

    stack_dir: Path = Path("/var/tmp/somastream")
    # The local KRaft controller listens here; the broker itself uses kafka_bootstrap.
    kafka_controller_port: int = 9093
    worker_host: str = "127.0.0.1"
    worker_base_port: int = 6066
    # Workers per flow that `make up` runs, e.g. SOMA_FLOW_WORKERS='{"session-counts": 2}';
    # a flow not named runs its spec's count.
    flow_workers: dict[str, int] = Field(default_factory=dict)

    # Observability (docs/observability.md). The lag exporter listens just below the workers'
    # ports unless set, so one SOMA_WORKER_BASE_PORT moves a whole plane's ports.
    lag_exporter_port: int | None = None
    lag_poll_interval_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    lag_tenant_sample: Annotated[int, Field(ge=0, le=10_000)] = 200  # records per partition
    lag_tenant_series: Annotated[int, Field(ge=0, le=1000)] = 20  # tenants per group/topic
    prometheus_port: int = 9090  # the stack's Prometheus (loopback)

    @field_validator("jwt_keys", "flow_workers", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value)
        return value

    def exporter_port(self) -> int:
        """SOMA_LAG_EXPORTER_PORT, or the port just below SOMA_WORKER_BASE_PORT."""
        return self.lag_exporter_port or self.worker_base_port - 1

    def replica_postgres_dsn(self) -> str:
        """SOMA_REPLICA_DSN, or the `soma_replica` database beside SOMA_POSTGRES_DSN."""
        if self.replica_dsn:
            return self.replica_dsn
        return make_conninfo(self.postgres_dsn, dbname=REPLICA_DBNAME)

    @model_validator(mode="after")
    def _per_install_key(self) -> Settings:
        # Dev mode without SOMA_JWT_KEYS signs and verifies with this install's own key, so
        # tokens minted on one install (or from the source code) open no other.
        if not self.jwt_keys and self.mode == "dev":
            key = read_secret(self.stack_dir, DEV_JWT_SECRET)
            if key is not None:
                self.jwt_keys = {DEV_JWT_KID: key}
        return self

    def check_secrets(self) -> None:
        """Refuse to sign or verify without a key, with a key anyone can know, or a short one.

        Called by what needs the keys (the gateway, `soma token`), not by every command.
        """
        if not self.jwt_keys:
            raise ConfigError(
                "no JWT signing key: run `make up` (it generates this install's key in "
                f"{self.stack_dir}/secrets) or set SOMA_JWT_KEYS"
            )
        if self.jwt_active_kid not in self.jwt_keys:
            raise ConfigError(
                f"SOMA_JWT_ACTIVE_KID={self.jwt_active_kid!r} is not a key of SOMA_JWT_KEYS"
            )
        public = [kid for kid, key in self.jwt_keys.items() if key in PUBLIC_SECRETS]
        if public:
            raise ConfigError(
                f"the key of kid(s) {public} is published in the source code: remove it from "
                "SOMA_JWT_KEYS (dev mode generates a per-install key with `make up`)"
            )
        short = [kid for kid, key in self.jwt_keys.items() if len(key) < MIN_KEY_CHARS]
        if short:
            raise ConfigError(f"JWT keys {short} are shorter than {MIN_KEY_CHARS} characters")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
