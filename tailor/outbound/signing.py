"""Signing deliveries, and the secrets they are signed with.

Each request carries

    Tailor-Signature: t=<Unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

keyed with the endpoint's secret (the whole ``whsec_...`` string, as UTF-8). A receiver
recomputes the HMAC over the exact bytes it received, compares in constant time, and refuses a
``t`` more than five minutes from its clock, so a captured request cannot be replayed later.
Each retry is signed afresh. After a rotation the header holds one ``v1`` per secret still
valid (the new one first), so receivers can switch over at their own pace.

The secret is not stored anywhere:

    secret = "whsec_" + base64url(
        HMAC-SHA256(TAILOR_OUTBOUND_SECRET, "outbound:<endpoint id>:<version>"))

so the database alone cannot sign, and rotating bumps ``version``. A Segment write key has to be
sent as it is, so it is stored sealed with AES-GCM under a key derived the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HEADER = "Tailor-Signature"
TOLERANCE_S = 300
_SEAL_VERSION = "v1"
_NONCE_BYTES = 12


class SealBroken(Exception):
    """A sealed write key that does not open: TAILOR_OUTBOUND_SECRET changed since it was set."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def endpoint_secret(server_secret: str, endpoint_id: str, version: int) -> str:
    """The signing secret of an endpoint at a version: shown once, recomputed to sign."""
    mac = hmac.digest(
        server_secret.encode(), f"outbound:{endpoint_id}:{version}".encode(), "sha256"
    )
    return "whsec_" + _b64(mac)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """``t=<timestamp>,v1=<signature>`` with one ``v1`` per secret, in the order given."""
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in secrets)])


def verify(
    secret: str, header: str, body: bytes, *, now: float, tolerance_s: int = TOLERANCE_S
) -> bool:
    """What a receiver does (the README shows the same in a few lines): True when one ``v1`` of
    ``header`` is the signature of ``body`` under ``secret`` and ``t`` is within tolerance."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


def _sealing_key(server_secret: str) -> bytes:
    return hmac.digest(server_secret.encode(), b"outbound:write-keys", "sha256")


def seal(server_secret: str, plaintext: str, endpoint_id: str) -> str:
    """``plaintext`` encrypted and authenticated, bound to the endpoint (a sealed value copied to
    another endpoint's row does not open there)."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_sealing_key(server_secret)).encrypt(
        nonce, plaintext.encode(), endpoint_id.encode()
    )
    return f"{_SEAL_VERSION}.{_b64(nonce + sealed)}"


def unseal(server_secret: str, sealed: str, endpoint_id: str) -> str:
    version, _, payload = sealed.partition(".")
    if version != _SEAL_VERSION:
        raise SealBroken("unknown seal version")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    try:
        plain = AESGCM(_sealing_key(server_secret)).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], endpoint_id.encode()
        )
    except InvalidTag as error:
        raise SealBroken("the write key does not open with this server's secret") from error
    return plain.decode()
