"""Bearer token rules: key rotation by kid, expiry, issuer, audience and the claims we trust."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from gateway.auth import issue_token, verify_token
from gateway.errors import Unauthorized
from soma.errors import ConfigError
from soma.secrets import ensure_secret
from soma.settings import DEV_JWT_SECRET, PUBLIC_SECRETS, Settings
from tests.conftest import TEST_JWT_KEYS

OLD, NEW = TEST_JWT_KEYS["k1"], TEST_JWT_KEYS["k2"]


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"jwt_keys": {"k1": OLD, "k2": NEW}, "jwt_active_kid": "k2"}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _refusal(settings: Settings, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verify_token(settings, token)
    assert caught.value.status_code == 401
    assert caught.value.headers is not None
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer ")
    return caught.value.message


def test_token_carries_tenant_subject_and_roles() -> None:
    settings = _settings()
    token = issue_token(settings, "acme", subject="alice", roles=["admin", "reader"])
    principal = verify_token(settings, token)
    assert (principal.tenant, principal.subject) == ("acme", "alice")
    assert principal.roles == frozenset({"admin", "reader"})
    assert jwt.get_unverified_header(token)["kid"] == "k2"


def test_rotation_old_kid_verifies_while_listed_and_not_after() -> None:
    before_rotation = _settings(jwt_keys={"k1": OLD}, jwt_active_kid="k1")
    old_token = issue_token(before_rotation, "acme")
    # Rotation step 1: the new key is added and signs; the old one still verifies.
    during = _settings()
    assert verify_token(during, old_token).tenant == "acme"
    assert jwt.get_unverified_header(issue_token(during, "acme"))["kid"] == "k2"
    # Step 2: once old tokens have expired the old kid is removed and its tokens refused.
    after = _settings(jwt_keys={"k2": NEW})
    assert "unknown key id" in _refusal(after, old_token)
    assert verify_token(after, issue_token(during, "acme")).tenant == "acme"


def test_a_listed_kid_with_the_wrong_key_is_refused() -> None:
    forged = jwt.encode(
        {
            "iss": "somastream",
            "aud": "somastream",
            "sub": "x",
            "tenant": "acme",
            "exp": int(time.time()) + 60,
        },
        "not-the-real-key-" + "z" * 32,
        algorithm="HS256",
        headers={"kid": "k2"},
    )
    assert "Signature verification failed" in _refusal(_settings(), forged)


def test_expired_token_is_refused() -> None:
    settings = _settings()
    assert _refusal(settings, issue_token(settings, "acme", ttl_s=-1)) == "token expired"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [("jwt_audience", "elsewhere", "audience"), ("jwt_issuer", "someone", "issuer")],
)
def test_wrong_audience_or_issuer_is_refused(field: str, value: str, reason: str) -> None:
    token = issue_token(_settings(**{field: value}), "acme")
    assert reason in _refusal(_settings(), token).lower()


def test_missing_tenant_claim_and_unsigned_tokens_are_refused() -> None:
    claims = {"iss": "somastream", "aud": "somastream", "sub": "x", "exp": int(time.time()) + 60}
    no_tenant = jwt.encode(claims, NEW, algorithm="HS256", headers={"kid": "k2"})
    assert "tenant" in _refusal(_settings(), no_tenant)
    unsigned = jwt.encode(
        {**claims, "tenant": "acme"}, None, algorithm="none", headers={"kid": "k2"}
    )
    assert "HS256" in _refusal(_settings(), unsigned)


def test_a_tenant_that_cannot_start_a_record_key_is_refused() -> None:
    claims = {
        "iss": "somastream",
        "aud": "somastream",
        "sub": "x",
        "tenant": "a/b",
        "exp": int(time.time()) + 60,
    }
    token = jwt.encode(claims, NEW, algorithm="HS256", headers={"kid": "k2"})
    assert "tenant" in _refusal(_settings(), token)
    with pytest.raises(ValueError, match="tenant"):
        issue_token(_settings(), "a/b")


def test_issue_token_refuses_an_unlisted_kid() -> None:
    with pytest.raises(ValueError, match="k7"):
        issue_token(_settings(), "acme", kid="k7")


def test_a_token_signed_with_the_key_once_in_the_source_opens_no_install(tmp_path: Path) -> None:
    ensure_secret(tmp_path, DEV_JWT_SECRET)  # what `make up` does on this install
    settings = Settings(stack_dir=tmp_path)
    settings.check_secrets()
    (published,) = PUBLIC_SECRETS
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "mallory",
        "tenant": "victim",
        "roles": ["admin"],
        "exp": int(time.time()) + 60,
    }
    with pytest.warns(InsecureKeyLengthWarning):  # it was a short key, too
        forged = jwt.encode(claims, published, algorithm="HS256", headers={"kid": "dev"})
    assert "signature" in _refusal(settings, forged).lower()
    # Nor can that key be configured on purpose.
    with pytest.raises(ConfigError, match="published"):
        Settings(jwt_keys={"dev": published}).check_secrets()


def test_token_lifetime_is_capped_when_issued_and_when_verified() -> None:
    settings = _settings(jwt_max_ttl_s=600)
    with pytest.raises(ValueError, match="at most 600"):
        issue_token(settings, "acme", ttl_s=601)
    issue_token(settings, "acme", ttl_s=600)
    long_lived = issue_token(_settings(), "acme", ttl_s=3600)  # signed where the cap is higher
    assert "longer than 600" in _refusal(settings, long_lived)
