"""The topic registry, the admin that applies it, and the one producer path every component uses."""
