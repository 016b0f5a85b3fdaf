-- The audit store: every agent.audit.v1 event of a tenant as one link of a hash chain
-- (processors/audit_chain.py), appended by the audit flow, read by the gateway's audit routes
-- and checked by `soma audit verify`.
-- `canonical` is the exact text that was hashed; `event` is the same JSON as jsonb for queries
-- (verify checks the two agree). `event_id` is unique per tenant: a redelivered event is not
-- appended twice. `audit_heads` holds each chain's last link; appends lock it, so two writers
-- can never fork a chain, and verify compares it with the last stored link.
-- depends: 0001.memory-items-and-links

CREATE TABLE audit_log (
    tenant           text NOT NULL,
    seq              bigint NOT NULL CHECK (seq >= 1),
    event_id         text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    event            jsonb NOT NULL,
    canonical        text NOT NULL,
    prev_hash        text NOT NULL,
    hash             text NOT NULL,
    source_partition integer,
    source_offset    bigint,
    appended_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, seq),
    CONSTRAINT audit_log_event_once UNIQUE (tenant, event_id)
);

CREATE INDEX audit_log_time ON audit_log (tenant, occurred_at);
CREATE INDEX audit_log_action ON audit_log (tenant, (event ->> 'action'), seq);

CREATE TABLE audit_heads (
    tenant     text PRIMARY KEY,
    seq        bigint NOT NULL,
    hash       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
