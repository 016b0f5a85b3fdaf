"""Memory backends behind one interface: Postgres (the embedded default), SomaBrain's HTTP API."""
