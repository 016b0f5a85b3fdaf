"""Failures of the local stack runner, each phrased as what the operator should do next."""

from soma.errors import SomaError


class StackError(SomaError):
    """A service of the local stack could not be installed, started, stopped or reached."""


class PortTakenError(StackError):
    """A port of the stack is already served by a process that this stack did not start."""
