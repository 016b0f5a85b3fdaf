"""The audit store: per-tenant hash chains of audit events in Postgres."""
