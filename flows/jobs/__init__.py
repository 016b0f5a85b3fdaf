"""Bounded Bytewax jobs: each reads a fixed offset range and ends."""
