"""SomaStream: the streaming memory and event plane (cross-cutting settings, errors and CLI)."""
