"""Signed tokens for the open pixel and the click redirect.

A token names a send (and, for a click, which of the email's links) and nothing else: no
address, no URL, no tenant. It is signed with a key of the send's tenant,

    key = HMAC-SHA256(secret, f"tracking:{tenant_id}:{version}")

so a tenant's keys rotate by bumping ``version``: tokens of the current and the previous
version verify, older ones do not (emails keep working through one rotation). The tenant is
not in the token, so a route reads the send id unverified (``peek_send_id``), finds that
send's tenant, and only then verifies with that tenant's key.

Layout, before base64url without padding (fixed widths, so each kind has one length):

    open:  kind (1) | key version (2) | send id (8)                    | MAC (16)
    click: kind (1) | key version (2) | send id (8) | link index (2)   | MAC (16)

The MAC is HMAC-SHA256 over everything before it, truncated to 128 bits.
"""

from __future__ import annotations

import base64
import enum
import hmac
import re
import struct
from dataclasses import dataclass


class TrackingKind(enum.IntEnum):
    OPEN = 1
    CLICK = 2


@dataclass(frozen=True)
class TrackingToken:
    kind: TrackingKind
    send_id: int
    link_index: int | None  # which of the email's links; None for an open
    key_version: int


MAC_BYTES = 16  # 128 bits: forging one takes 2**128 guesses, and each guess is a request
_HEAD = struct.Struct(">BHQ")  # kind, key version, send id
_LINK = struct.Struct(">H")
_LENGTHS = {
    TrackingKind.OPEN: _HEAD.size + MAC_BYTES,
    TrackingKind.CLICK: _HEAD.size + _LINK.size + MAC_BYTES,
}
MAX_VERSION = 0xFFFF
MAX_SEND_ID = 0xFFFF_FFFF_FFFF_FFFF
MAX_LINK_INDEX = 0xFFFF
# The base64url alphabet, ASCII only; anything else is not a token (checked before decoding,
# because the decoder silently drops characters outside its alphabet).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


def tenant_key(secret: str, tenant_id: str, version: int) -> bytes:
    return hmac.digest(secret.encode(), f"tracking:{tenant_id}:{version}".encode(), "sha256")


def sign_open(secret: str, tenant_id: str, version: int, send_id: int) -> str:
    return _sign(secret, tenant_id, version, _head(TrackingKind.OPEN, version, send_id))


def sign_click(secret: str, tenant_id: str, version: int, send_id: int, link_index: int) -> str:
    if not 0 <= link_index <= MAX_LINK_INDEX:
        raise ValueError(f"link index {link_index} is outside 0..{MAX_LINK_INDEX}")
    body = _head(TrackingKind.CLICK, version, send_id) + _LINK.pack(link_index)
    return _sign(secret, tenant_id, version, body)


def peek_send_id(token: str) -> int | None:
    """The send id a well-formed token claims, NOT verified: only to find whose key to
    verify it with. Never act on it before ``verify`` says yes."""
    parsed = _parse(token)
    return None if parsed is None else parsed[0].send_id


def verify(secret: str, tenant_id: str, current_version: int, token: str) -> TrackingToken | None:
    """The token if it is well formed and signed with this tenant's current or previous key;
    otherwise None (never raises, whatever the input)."""
    parsed = _parse(token)
    if parsed is None:
        return None
    claimed, body, mac = parsed
    if claimed.key_version not in (current_version, current_version - 1):
        return None
    key = tenant_key(secret, tenant_id, claimed.key_version)
    expected = hmac.digest(key, body, "sha256")[:MAC_BYTES]
    return claimed if hmac.compare_digest(expected, mac) else None


def _head(kind: TrackingKind, version: int, send_id: int) -> bytes:
    if not 0 <= version <= MAX_VERSION:
        raise ValueError(f"key version {version} is outside 0..{MAX_VERSION}")
    if not 0 <= send_id <= MAX_SEND_ID:
        raise ValueError(f"send id {send_id} is outside 0..{MAX_SEND_ID}")
    return _HEAD.pack(kind, version, send_id)


def _sign(secret: str, tenant_id: str, version: int, body: bytes) -> str:
    mac = hmac.digest(tenant_key(secret, tenant_id, version), body, "sha256")[:MAC_BYTES]
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode("ascii")


def _parse(token: object) -> tuple[TrackingToken, bytes, bytes] | None:
    """(claimed token, signed bytes, MAC) of a well-formed token, else None."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None
    # One spelling per token: a string that decodes to the same bytes but differs (unused
    # low bits in the last character) is not the token that was issued.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        return None
    if not raw:
        return None
    try:
        kind = TrackingKind(raw[0])
    except ValueError:
        return None
    if len(raw) != _LENGTHS[kind]:
        return None
    body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    _, version, send_id = _HEAD.unpack_from(body)
    link_index = _LINK.unpack_from(body, _HEAD.size)[0] if kind is TrackingKind.CLICK else None
    return TrackingToken(kind, send_id, link_index, version), body, mac
