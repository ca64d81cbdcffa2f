"""OIDC bearer tokens: a JWT from the configured issuer, proved by the issuer's published keys.

A token stands for a caller when its signature verifies with a key of the issuer's JWKS and its
``iss``, ``aud``, ``exp`` and ``nbf`` hold; its tenant and role claims then say who it is, as an
API key's row does. Anything else proves nothing (``verify`` answers None, as for a bad key) and
the log says why in a word, never with the token: it is a credential until it expires.

Signing keys come from a file, or from a URL fetched with a short timeout and trusted for the
cache TTL. A token naming a key the cache lacks (the issuer rotated) forces one fetch, at most
every few seconds, so tokens with made-up key ids cannot turn the API into a fetch loop. While the
issuer is unreachable the keys fetched last keep working.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt

from tailor.accounts.principal import Principal
from tailor.config import OIDC_ALGORITHMS, Settings
from tailor.models import Role

log = logging.getLogger(__name__)

_LEEWAY_S = 30  # clock skew between the issuer and us
_FETCH_TIMEOUT_S = 3.0  # a request waits on this fetch: keep it short
_REFETCH_AFTER_S = 10.0  # the least time between two fetches, forced or after a failure
_SUBJECT_MAX = 194  # "oidc:" + subject fits the audit log's 200-character actor
# Which key types sign with which algorithms: a key is only ever used for its own family, so a
# token cannot pick an algorithm that reads the public key as something else.
_FAMILIES = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}

# Every role but platform: onboarding tenants takes a platform key, never a token.
_TOKEN_ROLES = frozenset(r.value for r in Role) - {Role.PLATFORM.value}

Jwk = dict[str, Any]


class Refused(Exception):
    """Why a token proves nothing, in a word fit for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JwksUnavailable(Exception):
    """The signing keys could not be read (unreachable, not JSON, not a JWKS)."""


class OidcVerifier:
    """Checks bearer JWTs from one issuer and maps them to principals."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str],
        jwks_url: str | None = None,
        jwks_file: Path | None = None,
        tenant_claim: str = "tailor_tenant",
        role_claim: str = "tailor_role",
        cache_ttl_s: float = 300.0,
        refetch_after_s: float = _REFETCH_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (jwks_url is None) == (jwks_file is None):
            raise ValueError("give exactly one of jwks_url and jwks_file")
        if not algorithms or not set(algorithms) <= OIDC_ALGORITHMS:
            raise ValueError(f"algorithms must be among {sorted(OIDC_ALGORITHMS)}")
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._jwks_url = jwks_url
        self._jwks_file = jwks_file
        self._tenant_claim = tenant_claim
        self._role_claim = role_claim
        self._ttl = cache_ttl_s
        self._refetch_after = refetch_after_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: list[Jwk] = []
        self._fresh_until = float("-inf")  # when the cached keys must be fetched again
        self._attempted_at = float("-inf")  # the last fetch, whether it worked or not
        if jwks_file is not None:  # a broken file stops the API at startup, not at first use
            try:
                self._keys = _read_file(jwks_file)
            except JwksUnavailable as exc:
                raise ValueError(f"TAILOR_OIDC_JWKS_FILE {jwks_file}: {exc}") from exc
            if not self._keys:
                raise ValueError(f"TAILOR_OIDC_JWKS_FILE {jwks_file}: no RSA, EC or OKP keys")
            self._attempted_at = clock()
            self._fresh_until = self._attempted_at + cache_ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcVerifier | None:
        """The verifier the settings describe; None when OIDC is off."""
        if settings.oidc_issuer is None:
            return None
        assert settings.oidc_audience is not None  # the settings validator requires it
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            algorithms=settings.oidc_algorithms,
            jwks_url=settings.oidc_jwks_url,
            jwks_file=settings.oidc_jwks_file,
            tenant_claim=settings.oidc_tenant_claim,
            role_claim=settings.oidc_role_claim,
            cache_ttl_s=settings.oidc_jwks_cache_ttl_s,
        )

    async def verify(self, token: str) -> Principal | None:
        """The principal a token stands for; None if it proves nothing."""
        try:
            return await self._verify(token)
        except Refused as exc:
            log.info("OIDC token refused: %s", exc.reason)
            return None

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Refused("malformed") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise Refused("algorithm")  # none, HS*, or one the settings do not allow
        kid = header.get("kid")
        jwk = await self._signing_key(kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(
                token,
                key=_public_key(jwk, alg),
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=_LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Refused("expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Refused("not_yet_valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise Refused("audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Refused("issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise Refused("signature") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Refused(f"missing_{exc.claim}") from exc
        except jwt.PyJWTError as exc:
            raise Refused("invalid") from exc
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > _SUBJECT_MAX:
            raise Refused("subject")
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise Refused("tenant_claim")
        named = claims.get(self._role_claim)
        role = Role(named) if isinstance(named, str) and named in _TOKEN_ROLES else None
        if role is None:
            raise Refused("role_claim")
        return Principal(tenant_id=tenant, role=role, actor=f"oidc:{subject}", kind="token")

    async def _signing_key(self, kid: str | None) -> Jwk:
        if self._clock() >= self._fresh_until:
            await self._refresh(seen=self._attempted_at)
        found = _pick(self._keys, kid)
        if found is None and self._clock() - self._attempted_at >= self._refetch_after:
            await self._refresh(seen=self._attempted_at)  # the issuer may have rotated
            found = _pick(self._keys, kid)
        if found is None:
            raise Refused("unknown_key")
        return found

    async def _refresh(self, *, seen: float) -> None:
        """Read the keys again, unless another request did while this one waited for the lock
        (``seen``: the last attempt this one knew of)."""
        async with self._lock:
            if self._attempted_at != seen:
                return
            now = self._clock()
            self._attempted_at = now
            try:
                keys = await self._fetch() if self._jwks_url else _read_file(self._jwks_file)
            except JwksUnavailable as exc:
                log.warning("OIDC signing keys unavailable (keeping the last ones): %s", exc)
                self._fresh_until = now + self._refetch_after
                return
            self._keys = keys
            self._fresh_until = now + self._ttl

    async def _fetch(self) -> list[Jwk]:
        assert self._jwks_url is not None
        try:
            async with httpx.AsyncClient(timeout=_FETCH_TIMEOUT_S) as client:
                response = await client.get(self._jwks_url, headers={"Accept": "application/json"})
                response.raise_for_status()
                return _parse(response.json())
        except httpx.HTTPError as exc:
            raise JwksUnavailable(f"{self._jwks_url}: {type(exc).__name__}") from exc
        except ValueError as exc:  # not JSON
            raise JwksUnavailable(f"{self._jwks_url}: not JSON") from exc


def _read_file(path: Path | None) -> list[Jwk]:
    assert path is not None
    try:
        return _parse(json.loads(path.read_text()))
    except OSError as exc:
        raise JwksUnavailable(f"cannot read it ({exc.strerror})") from exc
    except ValueError as exc:
        raise JwksUnavailable("not JSON") from exc


def _parse(document: object) -> list[Jwk]:
    """The signing keys of a JWKS document: public-key types only, encryption keys left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable('not a JWKS (no "keys" list)')
    return [
        key
        for key in document["keys"]
        if isinstance(key, dict) and key.get("kty") in _FAMILIES and key.get("use", "sig") == "sig"
    ]


def _pick(keys: list[Jwk], kid: str | None) -> Jwk | None:
    """The key a token names; a token without a key id only matches a set of one."""
    if kid is None:
        return keys[0] if len(keys) == 1 else None
    return next((key for key in keys if key.get("kid") == kid), None)


def _public_key(jwk: Jwk, alg: str) -> Any:
    """The key object to check a signature of ``alg`` with, if this key may sign with it."""
    if jwk.get("alg", alg) != alg or not alg.startswith(_FAMILIES[jwk["kty"]]):
        raise Refused("algorithm")
    try:
        return jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:  # a malformed JWK
        raise Refused("bad_key") from exc
