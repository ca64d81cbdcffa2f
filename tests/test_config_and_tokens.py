from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tailor.config import Settings
from tailor.sending.unsubscribe import unsubscribe_token, verify_unsubscribe_token
from tailor.store.segments import Segment


def test_production_refuses_the_development_unsubscribe_secret() -> None:
    with pytest.raises(ValidationError, match="TAILOR_UNSUBSCRIBE_SECRET"):
        Settings(env="production")
    with pytest.raises(ValidationError, match="TAILOR_TRACKING_SECRET"):
        Settings(env="production", unsubscribe_secret="s3cret-from-vault")
    with pytest.raises(ValidationError, match="TAILOR_OUTBOUND_SECRET"):
        Settings(env="production", unsubscribe_secret="s3cret-from-vault", tracking_secret="t")
    settings = Settings(
        env="production", unsubscribe_secret="s3cret-from-vault", tracking_secret="another",
        outbound_secret="a-third",
    )  # fmt: skip
    assert settings.env == "production" and not settings.outbound_private_urls


def test_tracking_urls_default_to_the_public_url() -> None:
    assert Settings(public_url="https://mail.shop.test/").tracking_base_url == (
        "https://mail.shop.test"
    )
    settings = Settings(public_url="https://a.test", tracking_url="https://t.shop.test")
    assert settings.tracking_base_url == "https://t.shop.test"


def test_database_defaults_to_sqlite_under_home() -> None:
    settings = Settings(home=Path("/srv/tailor"))
    assert settings.resolved_database_url == "sqlite+aiosqlite:////srv/tailor/tailor.db"
    pg = "postgresql+asyncpg://u@db/tailor"
    assert Settings(database_url=pg).resolved_database_url == pg


def test_unsubscribe_tokens_verify_and_resist_forgery() -> None:
    token = unsubscribe_token("k", "cmp_1", 42)
    assert verify_unsubscribe_token("k", token) == ("cmp_1", 42)
    assert verify_unsubscribe_token("other-key", token) is None
    assert verify_unsubscribe_token("k", token.replace(".42.", ".43.")) is None
    assert verify_unsubscribe_token("k", "garbage") is None


def test_segment_rejects_unknown_filters_and_inverted_ranges() -> None:
    with pytest.raises(ValidationError, match="engagement_min"):
        Segment(engagement_min=80, engagement_max=20)
    with pytest.raises(ValidationError, match="extra"):
        Segment.model_validate({"country": "DE"})
