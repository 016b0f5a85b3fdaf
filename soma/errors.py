"""Root of every SomaStream exception; each package's errors.py derives from it."""


class SomaError(Exception):
    """Base class for all SomaStream failures."""


class ConfigError(SomaError):
    """Configuration refused at start-up; the message says which variable to change."""


class TransientError(SomaError):
    """A failure that may pass by itself (a dependency down, slow or throttling).

    Flows retry what raises it, in place and with backoff, instead of dead-lettering the record:
    the fault is not the record's. `retry_after_s` is the dependency's hint, when it gave one.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
