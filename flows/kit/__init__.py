"""The flow kit: what every always-on flow shares (engine, commit order, dead letters)."""
