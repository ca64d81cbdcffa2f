"""OIDC bearer tokens: a JWT from the configured issuer reaches the API as its tenant and role,
and every way a token can be wrong answers 401, like a bad API key.

Keys are made here (RSA and EC), published as a JWKS file or by a loopback HTTP server; nothing
leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from api.main import create_app
from tailor.accounts.oidc import OidcVerifier
from tailor.config import Settings
from tailor.db import Database
from tailor.models import Role, Tenant
from tailor.store.tenants import upsert_tenant

ISSUER = "https://id.example.test/"
AUDIENCE = "tailor-api"
TENANT = "acme"


@dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str

    @property
    def jwk(self) -> dict[str, Any]:
        maker = jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk: dict[str, Any] = maker.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **header}
        )


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk for k in keys]}


def claims(role: str = "marketer", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-123", "iat": now, "exp": now + 300,
              "tailor_tenant": TENANT, "tailor_role": role}  # fmt: skip
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], **header: Any) -> str:
    """A token signed with ``alg: none``."""
    head = _b64(json.dumps({"alg": "none", "typ": "JWT", **header}).encode())
    return f"{head}.{_b64(json.dumps(payload).encode())}."


def hmac_signed_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HS256 keyed with the issuer's public key."""
    public = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def oidc_settings(db: Database, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": db.url, "redis_url": None, "rag_enabled": False,
                              "oidc_issuer": ISSUER, "oidc_audience": AUDIENCE}  # fmt: skip
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def rsa_signer() -> SigningKey:
    return rsa_key("rsa-1")


@pytest.fixture(scope="module")
def ec_signer() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture(scope="module")
def stranger() -> SigningKey:
    """A key the issuer never published."""
    return rsa_key("rsa-other")


@pytest.fixture
async def client(
    db: Database, tmp_path: Path, rsa_signer: SigningKey, ec_signer: SigningKey
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with OIDC on (keys from a JWKS file) and one tenant, ``acme``."""
    async with db.session() as session:
        await upsert_tenant(session=session, tenant=Tenant(
            id=TENANT, name="Acme", from_email="shop@acme.example", from_name="Acme",
            postal_address="1 Main St",
        ))  # fmt: skip
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(rsa_signer, ec_signer)))
    app = create_app(oidc_settings(db, oidc_jwks_file=path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CONTACT = {
    "email": "ada@example.com",
    "consent": {"status": "granted", "source": "signup-form", "method": "double-opt-in",
                "wording_version": "newsletter-v2"},
}  # fmt: skip


@pytest.mark.parametrize("signer_name", ["rsa_signer", "ec_signer"])
async def test_a_valid_token_reaches_its_tenant_as_its_role(
    client: httpx.AsyncClient, signer_name: str, request: pytest.FixtureRequest
) -> None:
    signer: SigningKey = request.getfixturevalue(signer_name)
    marketer = bearer(signer.sign(claims("marketer")))
    read = await client.get("/v1/templates/default", headers=marketer)
    assert read.status_code == 200, read.text
    usage = await client.get("/v1/usage/llm", headers=marketer)
    assert usage.status_code == 200, usage.text
    wrote = await client.post("/v1/contacts", json={"contacts": [CONTACT]}, headers=marketer)
    assert wrote.status_code == 200, wrote.text
    assert wrote.json()["created"] == 1


async def test_an_analyst_token_reads_but_may_not_write(
    client: httpx.AsyncClient, rsa_signer: SigningKey
) -> None:
    analyst = bearer(rsa_signer.sign(claims("analyst")))
    assert (await client.get("/v1/usage/llm", headers=analyst)).status_code == 200
    wrote = await client.post("/v1/contacts", json={"contacts": [CONTACT]}, headers=analyst)
    assert wrote.status_code == 403
    assert "analyst" in wrote.json()["message"]


Maker = Callable[[SigningKey, SigningKey], str]
#: case -> (the reason the verifier logs, how to make the token from the issuer's key and another)
BAD_TOKENS: dict[str, tuple[str | None, Maker]] = {
    "wrong audience": ("audience", lambda k, _: k.sign(claims(aud="someone-else"))),
    "wrong issuer": ("issuer", lambda k, _: k.sign(claims(iss="https://evil.example.test/"))),
    "expired": ("expired", lambda k, _: k.sign(claims(exp=int(time.time()) - 120))),
    "not yet valid": ("not_yet_valid", lambda k, _: k.sign(claims(nbf=int(time.time()) + 600))),
    "no expiry": ("missing_exp", lambda k, _: k.sign(claims(exp=None))),
    "no subject": ("missing_sub", lambda k, _: k.sign(claims(sub=None))),
    "another key under a known kid": (
        "signature",
        lambda k, other: SigningKey(k.kid, other.private, other.alg).sign(claims()),
    ),
    "unknown kid": ("unknown_key", lambda _, other: other.sign(claims())),
    "alg none": ("algorithm", lambda k, _: unsigned(claims(), kid=k.kid)),
    "HS256 keyed with the public key": (
        "algorithm",
        lambda k, _: hmac_signed_with_public_key(k, claims()),
    ),
    "no tenant claim": ("tenant_claim", lambda k, _: k.sign(claims(tailor_tenant=None))),
    "unknown role": ("role_claim", lambda k, _: k.sign(claims("superuser"))),
    "platform role": ("role_claim", lambda k, _: k.sign(claims("platform"))),
    "no role claim": ("role_claim", lambda k, _: k.sign(claims(tailor_role=None))),
    "a list of roles": ("role_claim", lambda k, _: k.sign(claims(tailor_role=["admin"]))),
    "a tenant that is not a string": ("tenant_claim", lambda k, _: k.sign(claims(tailor_tenant=7))),
    # A well-formed token of a tenant that does not exist: the API, not the verifier, refuses it.
    "a tenant that does not exist": (None, lambda k, _: k.sign(claims(tailor_tenant="ghost"))),
    "garbage": ("malformed", lambda *_: "not-a-jwt"),
}


async def test_every_bad_token_is_refused_like_a_bad_key(
    client: httpx.AsyncClient,
    rsa_signer: SigningKey,
    stranger: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One app for all the cases: a store per case would cost seconds each.
    answers: dict[str, int] = {}
    with caplog.at_level(logging.INFO, logger="tailor.accounts.oidc"):
        for case, (reason, make) in BAD_TOKENS.items():
            caplog.clear()
            token = make(rsa_signer, stranger)
            answer = await client.get("/v1/templates/default", headers=bearer(token))
            answers[case] = answer.status_code
            assert answer.headers.get("www-authenticate", "").startswith("Bearer"), case
            if reason is not None:
                assert caplog.messages == [f"OIDC token refused: {reason}"], case
            assert token not in caplog.text, case  # a reason in a word, never the credential
    assert answers == dict.fromkeys(BAD_TOKENS, 401)


async def test_an_api_key_still_works_with_oidc_on(db: Database, client: httpx.AsyncClient) -> None:
    from tests.conftest import key_headers

    answer = await client.get("/v1/templates/default", headers=await key_headers(db, TENANT))
    assert answer.status_code == 200, answer.text


async def test_tokens_are_refused_when_oidc_is_off(db: Database, rsa_signer: SigningKey) -> None:
    app = create_app(Settings(database_url=db.url, redis_url=None, rag_enabled=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            answer = await http.get("/v1/usage/llm", headers=bearer(rsa_signer.sign(claims())))
    assert answer.status_code == 401


# --- Keys from a URL: cached, fetched again on rotation ----------------------------------------


@dataclass
class JwksServer:
    url: str
    document: dict[str, Any]
    status: int = 200
    hits: list[float] = field(default_factory=list)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer(url="", document={"keys": []})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server spelling
            state.hits.append(time.monotonic())
            body = json.dumps(state.document).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_url_keys_are_cached_and_fetched_again_when_the_issuer_rotates(
    jwks_server: JwksServer,
) -> None:
    old, new = rsa_key("2024-a"), ec_key("2024-b")
    jwks_server.document = jwks(old)
    clock = Clock()
    verifier = OidcVerifier(
        issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256", "ES256"],
        jwks_url=jwks_server.url, cache_ttl_s=300, refetch_after_s=10, clock=clock,
    )  # fmt: skip

    principal = await verifier.verify(old.sign(claims("reviewer")))
    assert principal is not None
    assert (principal.tenant_id, principal.role, principal.actor, principal.kind) == (
        TENANT, Role.REVIEWER, "oidc:user-123", "token",
    )  # fmt: skip
    assert await verifier.verify(old.sign(claims())) is not None
    assert len(jwks_server.hits) == 1  # cached

    # The issuer rotates: a token under the new kid makes the verifier fetch once more.
    jwks_server.document = jwks(new)
    clock.now += 30
    assert await verifier.verify(new.sign(claims())) is not None
    assert len(jwks_server.hits) == 2
    # Made-up kids right after do not turn into a fetch each.
    for n in range(3):
        assert await verifier.verify(rsa_key(f"made-up-{n}").sign(claims())) is None
    assert len(jwks_server.hits) == 2
    # The old key is gone from the set: its tokens are refused once the cache is refreshed.
    clock.now += 301
    assert await verifier.verify(old.sign(claims())) is None
    assert await verifier.verify(new.sign(claims())) is not None
    assert len(jwks_server.hits) == 3


async def test_an_unreachable_issuer_keeps_the_last_keys(jwks_server: JwksServer) -> None:
    key = rsa_key("k")
    jwks_server.document = jwks(key)
    clock = Clock()
    verifier = OidcVerifier(
        issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"], jwks_url=jwks_server.url,
        cache_ttl_s=60, clock=clock,
    )  # fmt: skip
    assert await verifier.verify(key.sign(claims())) is not None
    jwks_server.status = 503
    clock.now += 61
    assert await verifier.verify(key.sign(claims())) is not None
    assert len(jwks_server.hits) == 2
    assert await verifier.verify(key.sign(claims())) is not None
    assert len(jwks_server.hits) == 2  # backs off instead of asking on every request


async def test_the_api_fetches_keys_from_the_configured_url(
    db: Database, jwks_server: JwksServer
) -> None:
    async with db.session() as session:
        await upsert_tenant(session=session, tenant=Tenant(
            id=TENANT, name="Acme", from_email="shop@acme.example", from_name="Acme",
            postal_address="1 Main St",
        ))  # fmt: skip
    key = rsa_key("url-key")
    jwks_server.document = jwks(key)
    app = create_app(oidc_settings(db, oidc_jwks_url=jwks_server.url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as http:
            ok = await http.get("/v1/usage/llm", headers=bearer(key.sign(claims("admin"))))
    assert ok.status_code == 200, ok.text


# --- Settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"oidc_audience": AUDIENCE}, "exactly one of TAILOR_OIDC_JWKS_URL"),
        (
            {"oidc_audience": AUDIENCE, "oidc_jwks_url": "https://x/j", "oidc_jwks_file": "j"},
            "exactly one of TAILOR_OIDC_JWKS_URL",
        ),
        ({"oidc_jwks_url": "https://x/j"}, "TAILOR_OIDC_AUDIENCE is required"),
        (
            {
                "oidc_audience": AUDIENCE,
                "oidc_jwks_url": "https://x/j",
                "oidc_algorithms": ["RS256", "HS256"],
            },
            "refused: HS256",
        ),  # fmt: skip
        (
            {
                "oidc_audience": AUDIENCE,
                "oidc_jwks_url": "https://x/j",
                "oidc_algorithms": ["none"],
            },
            "refused: none",
        ),
    ],
)
def test_incomplete_or_unsafe_oidc_settings_are_refused(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(oidc_issuer=ISSUER, **values)


def test_a_broken_jwks_file_stops_startup(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')  # symmetric keys never count
    with pytest.raises(ValueError, match="no RSA, EC or OKP keys"):
        OidcVerifier(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"], jwks_file=path)
    with pytest.raises(ValueError, match="cannot read it"):
        OidcVerifier(
            issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"], jwks_file=tmp_path / "nope"
        )
