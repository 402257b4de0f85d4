"""Settings: from the environment and .env, secrets hidden, mistakes named by variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DISCORD_TOKEN", "DATABASE_URL", "COMFYUI_SERVERS", "LOG_LEVEL", "DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_a_new_user_gets_working_defaults(tmp_path: Path) -> None:
    """With nothing set, the embedded database and a local ComfyUI are used."""
    settings = load_settings(env_file=None)
    assert settings.database_url.get_secret_value() == ""
    assert settings.database_path == Path("data/mediaoverload.db")
    assert settings.comfyui_servers == ["http://127.0.0.1:8188"]


def test_the_env_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values come from .env unless the environment sets them too."""
    env = tmp_path / ".env"
    env.write_text("DISCORD_TOKEN=from-file\nCOMFYUI_SERVERS=http://a:8188, http://b:8188#video\n")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings(env_file=env)
    assert settings.discord_token is not None
    assert settings.discord_token.get_secret_value() == "from-file"
    assert settings.comfyui_servers == ["http://a:8188", "http://b:8188#video"]
    assert settings.log_level == "DEBUG"


def test_a_setting_left_empty_in_the_env_file_takes_its_default(tmp_path: Path) -> None:
    """`DISCORD_GUILD_ID=` with nothing after it, as a user leaves an optional id, is unset
    rather than a refused number, so every command still starts."""
    env = tmp_path / ".env"
    env.write_text("DISCORD_GUILD_ID=\nDISCORD_NOTIFY_CHANNEL_ID=\nMAX_RUNS=\n")
    settings = load_settings(env_file=env)
    assert settings.discord_guild_id is None
    assert settings.discord_notify_channel_id is None
    assert settings.max_runs == 3


def test_secrets_never_show_in_printed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Printing or logging the settings does not reveal a token or a database password."""
    monkeypatch.setenv("DISCORD_TOKEN", "super-secret-token")
    monkeypatch.setenv("DATABASE_URL", "mysql://bot:pa55word@db/mo")
    settings = load_settings(env_file=None)
    for text in (str(settings), repr(settings)):
        assert "super-secret-token" not in text
        assert "pa55word" not in text


def test_a_missing_required_setting_names_the_variable() -> None:
    """The bot without a token says which variable to set."""
    settings = load_settings(env_file=None)
    with pytest.raises(ConfigError, match=r"^DISCORD_TOKEN is not set"):
        settings.require("discord_token")


def test_a_wrong_value_names_the_variable_but_not_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An invalid setting is reported by name, and its value is not echoed."""
    monkeypatch.setenv("LOG_LEVEL", "loud-secretish")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert "LOG_LEVEL" in str(caught.value)
    assert "loud-secretish" not in str(caught.value)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"COMFYUI_STALL_SECONDS": "0"}, "COMFYUI_STALL_SECONDS"),
        ({"COMFYUI_STALL_SECONDS": "five minutes"}, "COMFYUI_STALL_SECONDS"),
        ({"COMFYUI_JOB_TIMEOUT_SECONDS": "-1"}, "COMFYUI_JOB_TIMEOUT_SECONDS"),
        (
            {"COMFYUI_STALL_SECONDS": "600", "COMFYUI_JOB_TIMEOUT_SECONDS": "300"},
            "COMFYUI_JOB_TIMEOUT_SECONDS",
        ),
        ({"COMFYUI_DOWNLOAD_MAX_MB": "0"}, "COMFYUI_DOWNLOAD_MAX_MB"),
        ({"COMFYUI_DOWNLOAD_MIN_KB_PER_SECOND": "-1"}, "COMFYUI_DOWNLOAD_MIN_KB_PER_SECOND"),
        ({"COMFYUI_MAX_OUTPUTS_PER_JOB": "0"}, "COMFYUI_MAX_OUTPUTS_PER_JOB"),
        ({"COMFYUI_ANSWER_MAX_MB": "lots"}, "COMFYUI_ANSWER_MAX_MB"),
    ],
    ids=[
        "zero-stall",
        "stall-not-a-number",
        "negative-job-limit",
        "job-limit-under-stall",
        "zero-file-size",
        "negative-rate",
        "no-outputs",
        "answer-cap-not-a-number",
    ],
)
def test_a_bad_comfyui_time_limit_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    """A ComfyUI time or size limit that cannot work is refused, naming the variable."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value).startswith(f"invalid setting {named}: ")
