"""Names of the always-on flows and the module that wires each one (`soma flow run NAME`)."""

from __future__ import annotations

import importlib
from typing import Any, Protocol, cast

import faust

from flows.errors import UnknownFlow
from soma.settings import Settings

# NAME -> module exposing DEFAULT_APP_ID and build(app, settings); later flows add a line here.
FLOWS: dict[str, str] = {
    "session-counts": "flows.session_counts",
}


class FlowModule(Protocol):
    """What a flow module provides to the worker runner."""

    DEFAULT_APP_ID: str

    def build(self, app: faust.App, settings: Settings) -> Any: ...


def load_flow(name: str) -> FlowModule:
    """The module of a registered flow."""
    try:
        module_name = FLOWS[name]
    except KeyError:
        raise UnknownFlow(f"unknown flow {name!r}; known: {', '.join(sorted(FLOWS))}") from None
    return cast(FlowModule, importlib.import_module(module_name))
