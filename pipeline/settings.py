"""Typed settings from the environment and an optional `.env` file.

Built only by entry points and tests (never at import time). Secrets are SecretStr, so they
print as '**********'. A missing or wrong setting becomes one ConfigError naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.errors import ConfigError

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting, its default, and which are secrets; the README lists the same."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # -- files and folders
    data_dir: Path = Path("data")
    characters_dir: Path = Path("characters")
    workflows_dir: Path = Path("workflows")
    #: your own description templates (image/NAME.md, video/NAME.md) and styles.yaml
    templates_dir: Path = Path("templates")
    log_level: str = "INFO"

    # -- database: empty means SQLite at DATA_DIR/mediaoverload.db; mysql://user:pass@host:port/db
    database_url: SecretStr = SecretStr("")

    # -- ComfyUI: comma-separated URLs; '#video' after a URL tags a server's capabilities
    comfyui_servers: CommaList = Field(default_factory=lambda: ["http://127.0.0.1:8188"])

    # -- Discord
    discord_token: SecretStr | None = None

    @field_validator("comfyui_servers", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def database_path(self) -> Path:
        """Where the embedded SQLite database lives when no DATABASE_URL is set."""
        return self.data_dir / "mediaoverload.db"

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the first of `names` that is unset."""
        for name in names:
            value = getattr(self, name)
            if value is None or (isinstance(value, SecretStr) and not value.get_secret_value()):
                raise ConfigError(
                    f"{name.upper()} is not set: put it in the environment or in the .env file"
                )


def load_settings(env_file: Path | None = Path(".env"), **overrides: Any) -> Settings:
    """Read settings; a validation failure becomes one ConfigError naming each variable."""
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "a setting"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from None
