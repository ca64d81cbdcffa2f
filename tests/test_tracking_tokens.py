"""Tracking tokens: only Tailor can mint one, only for the tenant whose key signed it, through
one key rotation; and the click redirect goes only to a link Tailor put in that email."""

from __future__ import annotations

import base64
import random

import pytest

from tailor.tracking.links import target_for
from tailor.tracking.tokens import (
    TrackingKind,
    TrackingToken,
    peek_send_id,
    sign_click,
    sign_open,
    verify,
)

SECRET = "test-tracking-secret"


def _decode(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _encode(raw: bytes | bytearray) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_open_token_round_trips() -> None:
    token = sign_open(SECRET, "demo", 3, 123456789)
    assert verify(SECRET, "demo", 3, token) == TrackingToken(
        TrackingKind.OPEN, send_id=123456789, link_index=None, key_version=3
    )


def test_click_token_round_trips() -> None:
    token = sign_click(SECRET, "demo", 1, 42, 7)
    assert verify(SECRET, "demo", 1, token) == TrackingToken(TrackingKind.CLICK, 42, 7, 1)


def test_tokens_are_url_safe_and_compact() -> None:
    for token in (sign_open(SECRET, "demo", 1, 2**63), sign_click(SECRET, "demo", 1, 2**63, 9)):
        assert len(token) <= 40
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_changing_any_character_is_refused() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for token in (sign_open(SECRET, "demo", 1, 99), sign_click(SECRET, "demo", 1, 99, 2)):
        for position, original in enumerate(token):
            for replacement in alphabet:
                if replacement != original:
                    forged = token[:position] + replacement + token[position + 1 :]
                    assert verify(SECRET, "demo", 1, forged) is None, (position, replacement)


def test_changing_any_decoded_byte_is_refused() -> None:
    token = sign_click(SECRET, "demo", 1, 99, 2)
    raw = _decode(token)
    for position in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            tampered = bytearray(raw)
            tampered[position] ^= flip
            forged = _encode(tampered)
            assert verify(SECRET, "demo", 1, forged) is None, (position, flip)


def test_a_link_index_cannot_be_moved_to_another_link() -> None:
    # the click on link 0 re-labelled as link 1 with the same MAC: the MAC covers the index
    raw = _decode(sign_click(SECRET, "demo", 1, 5, 0))
    raw[12] = 1
    assert verify(SECRET, "demo", 1, _encode(raw)) is None


def test_another_tenants_key_is_refused() -> None:
    token = sign_open(SECRET, "other-shop", 1, 10)
    assert verify(SECRET, "demo", 1, token) is None
    assert verify("another-secret", "other-shop", 1, token) is None
    assert verify(SECRET, "other-shop", 1, token) is not None


def test_the_previous_key_version_is_still_accepted_but_not_older_ones() -> None:
    v4, v5, v6 = (sign_open(SECRET, "demo", version, 10) for version in (4, 5, 6))
    assert verify(SECRET, "demo", 6, v6) is not None
    assert verify(SECRET, "demo", 6, v5) is not None  # emails sent before the rotation
    assert verify(SECRET, "demo", 6, v4) is None  # two rotations back
    assert verify(SECRET, "demo", 5, v6) is None  # a key not issued yet


def test_a_token_relabelled_with_another_version_is_refused() -> None:
    raw = _decode(sign_open(SECRET, "demo", 5, 10))
    raw[2] = 6  # claims version 6, MAC made with version 5's key
    assert verify(SECRET, "demo", 6, _encode(raw)) is None


def test_peek_reads_the_claimed_send_id_without_a_key() -> None:
    assert peek_send_id(sign_open(SECRET, "demo", 1, 31337)) == 31337
    assert peek_send_id(sign_click(SECRET, "demo", 1, 8, 3)) == 8
    assert peek_send_id("not a token") is None


@pytest.mark.parametrize(
    "token",
    ["", "=", "====", "A", "AAAA", "a" * 36, "a" * 39, "a" * 200, "é" * 36, "a b", "a\x00b",
     "Zm9v", "../../etc/passwd", "%41%41", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="],
)  # fmt: skip
def test_malformed_tokens_are_refused_without_raising(token: str) -> None:
    assert verify(SECRET, "demo", 1, token) is None
    assert peek_send_id(token) is None


def test_truncated_or_extended_tokens_are_refused() -> None:
    token = sign_click(SECRET, "demo", 1, 77, 4)
    for cut in range(len(token)):
        assert verify(SECRET, "demo", 1, token[:cut]) is None
    assert verify(SECRET, "demo", 1, token + "A") is None
    assert verify(SECRET, "demo", 1, token + "AAAA") is None


def test_random_bytes_are_never_accepted_and_never_raise() -> None:
    rng = random.Random(1414)
    for _ in range(5000):
        raw = rng.randbytes(rng.randrange(0, 48))
        candidates = [_encode(raw), raw.decode("latin-1")]
        if raw:  # a well-formed shape of either kind with a random MAC
            candidates.append(_encode(bytes([1 + raw[0] % 2]) + raw))
        for token in candidates:
            assert verify(SECRET, "demo", 1, token) is None
            peek_send_id(token)  # must not raise


def test_signing_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        sign_open(SECRET, "demo", 1, -1)
    with pytest.raises(ValueError):
        sign_open(SECRET, "demo", 70000, 1)
    with pytest.raises(ValueError):
        sign_click(SECRET, "demo", 1, 1, -1)


LINKS = ["https://shop.example/p/1?utm_source=tailor", "http://shop.example/sale", "mailto:x@y.z"]


def test_the_redirect_goes_to_the_link_at_that_index() -> None:
    assert target_for(LINKS, 0) == LINKS[0]
    assert target_for(LINKS, 1) == LINKS[1]


def test_an_index_outside_the_emails_links_has_no_target() -> None:
    assert target_for(LINKS, 3) is None
    assert target_for(LINKS, -1) is None
    assert target_for([], 0) is None


@pytest.mark.parametrize(
    "url",
    ["mailto:x@y.z", "javascript:alert(1)", "data:text/html,<script>", "ftp://shop.example/f",
     "//evil.example/", "/relative/path", "https:///no-host", "https://shop.example/\r\nX: y",
     "https://shop.example/ a", ""],
)  # fmt: skip
def test_only_plain_http_links_are_targets(url: str) -> None:
    assert target_for([url], 0) is None
