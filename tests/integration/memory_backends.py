"""Build each memory backend for the contract suite: Postgres, SomaBrainClient on the stand-in."""

from __future__ import annotations

from pydantic import SecretStr

from soma.settings import Settings
from state.memory.backend import MemoryBackend
from state.memory.factory import memory_backend
from tests.support.somabrain import StandIn

IMPLEMENTATIONS = ("postgres", "somabrain")


def build_backend(kind: str, settings: Settings, standin: StandIn) -> MemoryBackend:
    """The backend the factory picks for the settings of `kind` (so the factory is tested too)."""
    if kind == "postgres":
        return memory_backend(settings.model_copy(update={"base_url": None}))
    update = {"api_token": SecretStr(standin.token), "base_url": standin.url}
    return memory_backend(settings.model_copy(update=update))
