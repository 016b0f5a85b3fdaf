"""Bearer JWT authentication (HS256, keys by `kid`); the tenant comes from the token only."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import Forbidden, Unauthorized
from processors.keys import TENANT_PATTERN
from soma.settings import Settings

_ALGORITHM = "HS256"
_TENANT = TENANT_PATTERN  # the `tenant` schema's rule: the first part of every record key
ADMIN_ROLE = "admin"  # administers its own tenant
PLATFORM_ADMIN_ROLE = "platform-admin"  # administers every tenant (the plane's operators)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject, tenant and roles."""

    subject: str
    tenant: str
    roles: frozenset[str]


def issue_token(
    settings: Settings,
    tenant: str,
    subject: str = "dev",
    roles: Iterable[str] = (),
    ttl_s: int = 3600,
    kid: str | None = None,
) -> str:
    """A token for `tenant`, signed with the active kid unless another listed kid is named."""
    kid = kid or settings.jwt_active_kid
    if ttl_s > settings.jwt_max_ttl_s:
        raise ValueError(
            f"a token lives at most {settings.jwt_max_ttl_s} s (SOMA_JWT_MAX_TTL_S), not {ttl_s}"
        )
    if kid not in settings.jwt_keys:
        raise ValueError(f"kid {kid!r} is not a key of SOMA_JWT_KEYS")
    if not _TENANT.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r} must match {_TENANT.pattern}")
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "tenant": tenant,
        "roles": sorted(set(roles)),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_keys[kid], algorithm=_ALGORITHM, headers={"kid": kid})


def verify_token(settings: Settings, token: str) -> Principal:
    """The principal of a valid token; raises Unauthorized saying why a token is refused."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise Unauthorized("malformed bearer token") from None
    kid = header.get("kid")
    # Every listed kid verifies, so a key can be rotated in before it signs and kept until the
    # last token it signed has expired; an unlisted kid is a retired or forged key.
    if not isinstance(kid, str) or kid not in settings.jwt_keys:
        raise Unauthorized("token signed with an unknown key id (kid)")
    if header.get("alg") != _ALGORITHM:
        raise Unauthorized(f"token algorithm must be {_ALGORITHM}")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_keys[kid],
            algorithms=[_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iss", "aud", "sub", "tenant"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    _check_lifetime(settings, claims)
    return _principal(claims)


# Clocks of the issuer and the gateway may disagree by this much.
_CLOCK_SKEW_S = 60


def _check_lifetime(settings: Settings, claims: dict[str, Any]) -> None:
    # A leaked token must not stay valid for ever: an exp further away than the longest
    # lifetime we allow means a token nobody should have issued.
    exp = claims["exp"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Unauthorized("token claim 'exp' must be a number")
    if exp - time.time() > settings.jwt_max_ttl_s + _CLOCK_SKEW_S:
        raise Unauthorized(
            f"token lives longer than {settings.jwt_max_ttl_s} s (its exp is too far away)"
        )


def _principal(claims: dict[str, Any]) -> Principal:
    tenant, subject, roles = claims["tenant"], claims["sub"], claims.get("roles", [])
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise Unauthorized(f"token claim 'tenant' must match {_TENANT.pattern}")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("token claim 'sub' must be a non-empty string")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("token claim 'roles' must be a list of strings")
    return Principal(subject=subject, tenant=tenant, roles=frozenset(roles))


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <jwt>)")
    return token.strip()


def _authenticate(request: Request) -> Principal:
    settings: Settings = request.app.state.settings
    principal = verify_token(settings, _bearer(request))
    request.state.principal = principal
    return principal


# Declares the scheme in the OpenAPI document (components.securitySchemes, and `security` on
# every operation that depends on it). auto_error=False: our own 401 body and challenge answer.
bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="HS256 JWT with claims sub, tenant, exp, iss, aud (roles optional); "
    "`soma token --tenant t1` mints one in dev mode.",
    auto_error=False,
)
_Credentials = HTTPAuthorizationCredentials | None


# The dependencies are async on purpose: FastAPI runs sync dependencies in a worker thread,
# a hop per request that HMAC verification (microseconds, no I/O) does not need.
async def require_principal(
    request: Request, _: _Credentials = Security(bearer_scheme)
) -> Principal:
    """FastAPI dependency: the authenticated caller, or 401."""
    return _authenticate(request)


def require_role(role: str) -> Callable[..., Awaitable[Principal]]:
    """FastAPI dependency factory: the caller, who must hold `role` (else 403)."""

    async def dependency(request: Request, _: _Credentials = Security(bearer_scheme)) -> Principal:
        principal = _authenticate(request)
        if role not in principal.roles:
            raise Forbidden(f"this endpoint needs the {role!r} role")
        return principal

    return dependency


require_admin = require_role(ADMIN_ROLE)
