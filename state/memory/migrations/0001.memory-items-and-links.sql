-- Memory items and links, isolated per tenant / namespace / universe by row-level security.
-- A session sees only the rows of the scope it named with
--   set_config('soma.tenant', ..., true), set_config('soma.namespace', ...), set_config('soma.universe', ...)
-- inside its transaction; without them it sees and writes nothing. FORCE applies the policies
-- to the table owner too (the role SomaStream connects as), so no query of ours can bypass them.
-- depends:

CREATE TABLE memory_items (
    key         text PRIMARY KEY,
    tenant      text NOT NULL,
    namespace   text NOT NULL,
    universe    text NOT NULL,
    value       jsonb NOT NULL,
    meta        jsonb NOT NULL DEFAULT '{}'::jsonb,
    session_id  text,
    tags        text[] NOT NULL DEFAULT '{}',
    ttl_seconds integer CHECK (ttl_seconds IS NULL OR ttl_seconds >= 0),
    body        text NOT NULL,
    -- 'simple': no language stemming or stop words; tenants write in any language.
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    stored_at   timestamptz NOT NULL DEFAULT now(),
    trace_id    text,
    CONSTRAINT memory_items_scope_parts CHECK (
        tenant <> '' AND namespace <> '' AND universe <> ''
        AND strpos(tenant, '/') = 0 AND strpos(namespace, '/') = 0 AND strpos(universe, '/') = 0),
    -- The key rule (processors/memory_keys.py) held by the database too: a key always carries
    -- its own scope, so two tenants can never collide on one key.
    CONSTRAINT memory_items_key_in_scope CHECK (
        starts_with(key, tenant || '/' || namespace || '/' || universe || '/'))
);

CREATE INDEX memory_items_tsv ON memory_items USING gin (tsv);
CREATE INDEX memory_items_scope_time ON memory_items (tenant, namespace, universe, occurred_at DESC);
CREATE INDEX memory_items_scope_session ON memory_items (tenant, namespace, universe, session_id);

ALTER TABLE memory_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_items FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_items_scope ON memory_items
    USING (tenant = current_setting('soma.tenant', true)
           AND namespace = current_setting('soma.namespace', true)
           AND universe = current_setting('soma.universe', true))
    WITH CHECK (tenant = current_setting('soma.tenant', true)
                AND namespace = current_setting('soma.namespace', true)
                AND universe = current_setting('soma.universe', true));

-- No foreign key to memory_items: with SomaBrain as the backend the items live there and only
-- the links live here (its /link answers 404).
CREATE TABLE memory_links (
    from_key   text NOT NULL,
    to_key     text NOT NULL,
    type       text NOT NULL CHECK (type <> '' AND length(type) <= 64),
    weight     double precision NOT NULL DEFAULT 1.0 CHECK (weight >= 0 AND weight <> 'NaN'),
    tenant     text NOT NULL,
    namespace  text NOT NULL,
    universe   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (from_key, to_key, type),
    CONSTRAINT memory_links_keys_in_scope CHECK (
        starts_with(from_key, tenant || '/' || namespace || '/' || universe || '/')
        AND starts_with(to_key, tenant || '/' || namespace || '/' || universe || '/'))
);

CREATE INDEX memory_links_to ON memory_links (to_key);

ALTER TABLE memory_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_links FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_links_scope ON memory_links
    USING (tenant = current_setting('soma.tenant', true)
           AND namespace = current_setting('soma.namespace', true)
           AND universe = current_setting('soma.universe', true))
    WITH CHECK (tenant = current_setting('soma.tenant', true)
                AND namespace = current_setting('soma.namespace', true)
                AND universe = current_setting('soma.universe', true));
