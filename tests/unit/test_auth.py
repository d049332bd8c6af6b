"""JWT rules of docs/protocol.md "Authorization" and "Tokens for the whole session"."""

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from openpanel_ws.auth import AuthError, JwtSettings, Principal, TokenVerifier, issue_token

SECRET = "s" * 40


def verifier(**kwargs: object) -> TokenVerifier:
    return TokenVerifier(JwtSettings(secret=SECRET, **kwargs))  # type: ignore[arg-type]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_token_gives_the_principal() -> None:
    token = issue_token(SECRET, subject="user-123", roles=["admin"], permissions=["terminal"],
                        containers=["web-*"])
    p = verifier().verify(token)
    assert p.user_id == "user-123"
    assert p.is_admin and p.may_open_terminal
    assert p.container_scopes == ("web-*",)


def test_userid_claim_is_the_fallback_for_sub() -> None:
    token = jwt.encode({"userId": "u-7", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert verifier().verify(token).user_id == "u-7"


def test_expired_token_says_token_expired() -> None:
    token = jwt.encode({"sub": "u", "exp": int(time.time()) - 3600}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="Token expired"):
        verifier().verify(token)


def test_exp_and_nbf_have_a_small_leeway() -> None:
    now = int(time.time())
    v = verifier(leeway_seconds=30)
    assert v.verify(jwt.encode({"sub": "u", "exp": now - 5}, SECRET, algorithm="HS256"))
    assert v.verify(jwt.encode({"sub": "u", "nbf": now + 5, "exp": now + 60}, SECRET, algorithm="HS256"))
    with pytest.raises(AuthError):
        v.verify(jwt.encode({"sub": "u", "nbf": now + 600}, SECRET, algorithm="HS256"))


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": "admin", "role": "admin"}).encode())
    for token in (f"{header}.{body}.", f"{header}.{body}"):
        with pytest.raises(AuthError, match="Invalid token"):
            verifier().verify(token)


def test_wrong_secret_and_garbage_are_refused() -> None:
    for token in (issue_token("other" * 10, subject="u"), "abc", "a.b.c", "", None, 42, "x" * 20000):
        with pytest.raises(AuthError):
            verifier().verify(token)


def test_other_hmac_algorithm_than_configured_is_refused() -> None:
    token = jwt.encode({"sub": "u"}, SECRET, algorithm="HS512")
    with pytest.raises(AuthError):
        verifier().verify(token)


def test_missing_subject_is_refused() -> None:
    with pytest.raises(AuthError):
        verifier().verify(jwt.encode({"role": "admin"}, SECRET, algorithm="HS256"))


def test_audience_and_issuer_are_checked_when_configured() -> None:
    v = verifier(audience="panel", issuer="openpanel")
    good = issue_token(SECRET, subject="u", audience="panel", issuer="openpanel")
    assert v.verify(good).user_id == "u"
    for bad in (issue_token(SECRET, subject="u", audience="other", issuer="openpanel"),
                issue_token(SECRET, subject="u", audience="panel", issuer="evil"),
                issue_token(SECRET, subject="u")):
        with pytest.raises(AuthError):
            v.verify(bad)


@pytest.fixture
def rsa_keys(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "pub.pem"
    path.write_bytes(pem)
    return key, path


def test_rs256_with_a_public_key(rsa_keys: tuple[rsa.RSAPrivateKey, Path]) -> None:
    key, path = rsa_keys
    v = TokenVerifier(JwtSettings(algorithm="RS256", public_key_file=path))
    assert v.verify(jwt.encode({"sub": "r", "exp": time.time() + 60}, key, algorithm="RS256")).user_id == "r"


def test_algorithm_confusion_hs256_signed_with_the_public_key_is_refused(
    rsa_keys: tuple[rsa.RSAPrivateKey, Path],
) -> None:
    _, path = rsa_keys
    v = TokenVerifier(JwtSettings(algorithm="RS256", public_key_file=path))
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": "admin", "role": "admin"}).encode())
    import hashlib
    import hmac

    signing_input = f"{header}.{body}".encode()
    sig = _b64(hmac.new(path.read_bytes(), signing_input, hashlib.sha256).digest())
    with pytest.raises(AuthError):
        v.verify(f"{header}.{body}.{sig}")


def test_es256(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    v = TokenVerifier(JwtSettings(algorithm="ES256", public_key_file=path))
    assert v.verify(jwt.encode({"sub": "e", "exp": time.time() + 60}, key, algorithm="ES256")).user_id == "e"


def test_container_scopes() -> None:
    unscoped = Principal("u")
    assert unscoped.may_access_container(["anything"])
    scoped = Principal("u", container_scopes=("web-*", "db"))
    assert scoped.may_access_container(["/web-1"])
    assert scoped.may_access_container(["db"])
    assert not scoped.may_access_container(["dbx"])
    assert not scoped.may_access_container([])
    assert not Principal("u", container_scopes=()).may_access_container(["web-1"])


def test_a_malformed_scope_claim_restricts() -> None:
    token = jwt.encode({"sub": "u", "containers": 5, "exp": time.time() + 60}, SECRET, algorithm="HS256")
    p = verifier().verify(token)
    assert p.container_scopes == ()
    assert not p.may_access_container(["web"])


def test_terminal_needs_admin_or_the_permission() -> None:
    assert Principal("u", roles=frozenset({"admin"})).may_open_terminal
    assert Principal("u", permissions=frozenset({"terminal"})).may_open_terminal
    assert not Principal("u", roles=frozenset({"viewer"})).may_open_terminal


def test_a_token_without_exp_is_refused_unless_configured() -> None:
    token = jwt.encode({"sub": "u"}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="Invalid token"):
        verifier().verify(token)
    assert verifier(require_exp=False).verify(token).user_id == "u"


def test_host_scopes_narrow_every_role_admin_included() -> None:
    token = issue_token(SECRET, subject="u", roles=["admin"], hosts=["staging-*"])
    p = verifier().verify(token)
    assert p.is_admin
    assert p.host_scopes == ("staging-*",)
    assert p.may_access_host("staging-2")
    assert not p.may_access_host("prod-1")
    assert verifier().verify(issue_token(SECRET, subject="u")).may_access_host("prod-1")


def test_a_malformed_hosts_claim_allows_no_host() -> None:
    token = jwt.encode({"sub": "u", "hosts": {"a": 1}, "exp": time.time() + 60}, SECRET, algorithm="HS256")
    p = verifier().verify(token)
    assert p.host_scopes == ()
    assert not p.may_access_host("local")
