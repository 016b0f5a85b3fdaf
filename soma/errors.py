"""Root of every SomaStream exception; each package's errors.py derives from it."""


class SomaError(Exception):
    """Base class for all SomaStream failures."""


class ConfigError(SomaError):
    """Configuration refused at start-up; the message says which variable to change."""
