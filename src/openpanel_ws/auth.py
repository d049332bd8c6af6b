"""JWT verification and the authenticated principal (docs/protocol.md "Authorization").

No I/O beyond reading key material once at start-up; tokens are never logged.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from openpanel_ws.protocol import EXPIRED_TOKEN_MESSAGE, INVALID_TOKEN_MESSAGE

__all__ = [
    "ADMIN_ROLE",
    "ASYMMETRIC_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "SYMMETRIC_ALGORITHMS",
    "TERMINAL_PERMISSION",
    "AuthError",
    "JwtSettings",
    "Principal",
    "TokenVerifier",
    "issue_token",
    "principal_from_claims",
    "scopes_match",
]

SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
SUPPORTED_ALGORITHMS = SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS

ADMIN_ROLE = "admin"
TERMINAL_PERMISSION = "terminal"


class AuthError(Exception):
    """Token refused; `str(error)` is the client-facing message."""


@dataclass(frozen=True, slots=True)
class Principal:
    """What a verified token allows. Only the claims the gateway uses are kept: every
    idle connection holds one (docs/bench.md, memory per connection)."""

    user_id: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    # None: no `containers` claim, every container allowed. Otherwise glob patterns.
    container_scopes: tuple[str, ...] | None = None
    expires_at: float | None = None
    # None: no `hosts` claim, every host allowed. Otherwise glob patterns over host ids.
    host_scopes: tuple[str, ...] | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def has_permission(self, permission: str) -> bool:
        return self.is_admin or permission in self.permissions

    @property
    def may_open_terminal(self) -> bool:
        return self.has_permission(TERMINAL_PERMISSION)

    def may_access_container(self, names: Iterable[str]) -> bool:
        """True when any of the container's names (without the leading '/') matches a scope."""
        return scopes_match(self.container_scopes, names)

    def may_access_host(self, host_id: str) -> bool:
        """The `hosts` claim (docs/protocol.md "Hosts"): narrows every role, admin included."""
        return scopes_match(self.host_scopes, (host_id,))


def scopes_match(scopes: tuple[str, ...] | None, names: Iterable[str]) -> bool:
    """The container scope rule (docs/protocol.md "Container scopes"): no scopes allow
    every container; otherwise one of its names (without the leading '/') must match one
    of the globs."""
    if scopes is None:
        return True
    candidates = [n.lstrip("/") for n in names if n]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in scopes for name in candidates)


@dataclass(frozen=True)
class JwtSettings:
    algorithm: str = "HS256"
    secret: str | None = None
    public_key_file: Path | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway_seconds: float = 30.0
    # Tokens without `exp` are refused unless this is False (docs/protocol.md "Token expiry").
    require_exp: bool = True


class TokenVerifier:
    """Verifies tokens with exactly one configured algorithm (no `none`, no confusion)."""

    def __init__(self, settings: JwtSettings) -> None:
        algorithm = settings.algorithm
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        self._settings = settings
        self._algorithms = [algorithm]
        self._key: Any
        if algorithm in SYMMETRIC_ALGORITHMS:
            if not settings.secret:
                raise ValueError(f"{algorithm} needs a secret")
            self._key = settings.secret
        else:
            if settings.public_key_file is None:
                raise ValueError(f"{algorithm} needs a public key file")
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            # A parsed key object (not the PEM text) plus the single pinned algorithm:
            # an HS256 token "signed" with the public key text can never verify.
            self._key = load_pem_public_key(settings.public_key_file.read_bytes())

    def verify(self, token: Any) -> Principal:
        if not isinstance(token, str) or not token or len(token) > 16384:
            raise AuthError(INVALID_TOKEN_MESSAGE)
        s = self._settings
        options: dict[str, Any] = {
            "verify_aud": s.audience is not None,
            "verify_iss": s.issuer is not None,
            "require": ["exp"] if s.require_exp else [],
        }
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(EXPIRED_TOKEN_MESSAGE) from None
        except jwt.PyJWTError:
            raise AuthError(INVALID_TOKEN_MESSAGE) from None
        return principal_from_claims(claims)


# Role and permission sets repeat across connections: one shared copy of each (memory
# per connection); bounded, since every distinct set comes from a signed token.
_SHARED_SETS: dict[frozenset[str], frozenset[str]] = {}


def _shared(values: Any) -> frozenset[str]:
    value = frozenset(values)
    if len(_SHARED_SETS) < 1024:
        return _SHARED_SETS.setdefault(value, value)
    return _SHARED_SETS.get(value, value)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    user = claims.get("sub", claims.get("userId"))
    if isinstance(user, int) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str) or not user:
        raise AuthError(INVALID_TOKEN_MESSAGE)
    roles = set(_string_list(claims.get("roles")))
    role = claims.get("role")
    if isinstance(role, str) and role:
        roles.add(role)
    scopes_claim = claims.get("containers")
    scopes: tuple[str, ...] | None = None
    if scopes_claim is not None:
        # A malformed scope claim must restrict, never widen: treat it as "nothing".
        scopes = tuple(_string_list(scopes_claim))
    hosts_claim = claims.get("hosts")
    # Like `containers`: a malformed claim restricts to nothing, never widens.
    host_scopes = None if hosts_claim is None else tuple(_string_list(hosts_claim))
    exp = claims.get("exp")
    return Principal(
        user_id=user,
        roles=_shared(roles),
        permissions=_shared(_string_list(claims.get("permissions"))),
        container_scopes=scopes,
        expires_at=float(exp) if isinstance(exp, int | float) else None,
        host_scopes=host_scopes,
    )


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def issue_token(
    secret: str,
    *,
    subject: str,
    algorithm: str = "HS256",
    roles: Sequence[str] = (),
    permissions: Sequence[str] = (),
    containers: Sequence[str] | None = None,
    hosts: Sequence[str] | None = None,
    ttl_seconds: float = 3600.0,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """Sign a token for the CLI's `token` command and the tests."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + int(ttl_seconds)}
    if len(roles) == 1:
        claims["role"] = roles[0]
    elif roles:
        claims["roles"] = list(roles)
    if permissions:
        claims["permissions"] = list(permissions)
    if containers is not None:
        claims["containers"] = list(containers)
    if hosts is not None:
        claims["hosts"] = list(hosts)
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=algorithm)
