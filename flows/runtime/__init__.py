"""Runtime parts of always-on flows that need I/O (imported by their resources, lazily)."""
