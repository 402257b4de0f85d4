"""The Discord settings: role lists from comma-separated text, the webhook kept secret."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def test_role_ids_are_read_from_comma_separated_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """DISCORD_REVIEW_ROLE_IDS=1, 2 allows both roles; unset allows everyone (empty)."""
    monkeypatch.setenv("DISCORD_REVIEW_ROLE_IDS", "111, 222")
    monkeypatch.delenv("DISCORD_ADMIN_ROLE_IDS", raising=False)
    settings = load_settings(env_file=None)
    assert settings.discord_review_role_ids == [111, 222]
    assert settings.discord_admin_role_ids == []


def test_the_notify_webhook_never_shows_in_printed_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The webhook URL holds a token, so it prints as stars."""
    monkeypatch.setenv("DISCORD_NOTIFY_WEBHOOK_URL", "https://discord.com/api/webhooks/1/s3cret")
    settings = load_settings(env_file=None)
    assert "s3cret" not in repr(settings)


def test_a_wrong_api_base_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """DISCORD_API_BASE must be an http(s) URL."""
    monkeypatch.setenv("DISCORD_API_BASE", "discord.com")
    with pytest.raises(ConfigError, match="DISCORD_API_BASE"):
        load_settings(env_file=None)
