"""SQL of the Postgres memory backend, in one place beside the migrations it must match."""

# Between two scopes of one batch transaction: the RLS settings change for what follows.
SET_SCOPE_AGAIN = (
    "SELECT set_config('soma.tenant', %s, true), set_config('soma.namespace', %s, true),"
    " set_config('soma.universe', %s, true)"
)

# Rows of one scope; ON CONFLICT DO NOTHING makes a replayed key a no-op, and RETURNING names
# only the keys this statement stored (the rest were there already, or twice in the batch).
INSERT_ITEMS = """
INSERT INTO memory_items
    (key, tenant, namespace, universe, value, meta, session_id, tags, ttl_seconds, body,
     occurred_at, trace_id)
SELECT r.key, %(tenant)s, %(namespace)s, %(universe)s, r.value, r.meta, r.session_id,
       ARRAY(SELECT jsonb_array_elements_text(r.tags)), r.ttl, r.body,
       coalesce(r.occurred, now()), r.trace
FROM unnest(%(keys)s::text[], %(values)s::jsonb[], %(metas)s::jsonb[], %(sessions)s::text[],
            %(tags)s::jsonb[], %(ttls)s::int[], %(bodies)s::text[], %(occurred)s::timestamptz[],
            %(traces)s::text[])
     WITH ORDINALITY AS r(key, value, meta, session_id, tags, ttl, body, occurred, trace, n)
ORDER BY r.n
ON CONFLICT (key) DO NOTHING
RETURNING key
"""

# Row-level security already limits rows to the transaction's scope; the scope is repeated in
# WHERE so the planner can use the scope indexes. ts_rank_cd normalisation 32 maps the rank
# into [0, 1); recency halves the second half of the score every half-life, at most 1,000
# times: 0.5^x underflows double precision past x ~ 1,074, and Postgres then fails the whole
# query ("value out of range: underflow") for a memory whose occurred_at is that old.
RECALL = """
SELECT key, value, occurred_at, score FROM (
    SELECT m.key, m.value, m.occurred_at,
           ts_rank_cd(m.tsv, q.tsq, 32)
             * (0.5 + 0.5 * power(0.5, least(greatest(extract(epoch FROM now() - m.occurred_at), 0)
                                              / %(half_life)s::float8, 1000))) AS score
    FROM memory_items m, to_tsquery('simple', %(tsq)s) AS q(tsq)
    WHERE m.tenant = %(tenant)s AND m.namespace = %(namespace)s AND m.universe = %(universe)s
      AND m.tsv @@ q.tsq
      AND (%(max_age)s::float8 IS NULL
           OR m.occurred_at >= now() - make_interval(secs => %(max_age)s::float8))
      AND (%(session)s::text IS NULL OR m.session_id = %(session)s::text)
      AND (m.ttl_seconds IS NULL OR m.stored_at + make_interval(secs => m.ttl_seconds) > now())
) AS hits
WHERE score >= %(min_score)s::float8
ORDER BY score DESC, occurred_at DESC, key
LIMIT %(top_k)s
"""
