"""Fixtures shared by every suite: isolated settings and bearer tokens (no I/O here)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from gateway.auth import issue_token
from soma.settings import Settings

# Test signing keys are long enough for HS256 (PyJWT warns below 32 bytes), and two kids are
# listed so rotation can be exercised; "k2" signs by default.
# Flow fixtures (flow_stack, flow_worker_factory) for the integration and fault suites.
pytest_plugins = ["tests.support.fixtures"]

TEST_JWT_KEYS = {"k1": "k1-test-secret-" + "a" * 32, "k2": "k2-test-secret-" + "b" * 32}

SettingsFactory = Callable[..., Settings]
TokenFactory = Callable[..., str]
AuthHeaders = Callable[..., dict[str, str]]


@pytest.fixture
def settings_factory() -> SettingsFactory:
    """`settings_factory(**overrides)`: Settings with a fresh topic prefix and test JWT keys."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
            "jwt_keys": TEST_JWT_KEYS,
            "jwt_active_kid": "k2",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def token_factory() -> TokenFactory:
    """`token_factory(settings, tenant="acme", roles=(), ttl_s=3600, kid=None, subject="test")`."""

    def make(
        settings: Settings,
        tenant: str = "acme",
        roles: Iterable[str] = (),
        ttl_s: int = 3600,
        kid: str | None = None,
        subject: str = "test",
    ) -> str:
        return issue_token(settings, tenant, subject=subject, roles=roles, ttl_s=ttl_s, kid=kid)

    return make


@pytest.fixture
def auth_headers(token_factory: TokenFactory) -> AuthHeaders:
    """`auth_headers(settings, tenant="acme", roles=())`: an Authorization header dict."""

    def make(settings: Settings, tenant: str = "acme", **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_factory(settings, tenant, **kwargs)}"}

    return make
