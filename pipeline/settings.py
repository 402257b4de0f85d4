"""Typed settings from the environment and an optional `.env` file.

Built only by entry points and tests (never at import time). Secrets are SecretStr, so they
print as '**********'. A missing or wrong setting becomes one ConfigError naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.errors import ConfigError

CommaList = Annotated[list[str], NoDecode]
IdList = Annotated[list[int], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting, its default, and which are secrets; the README lists the same."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # `DISCORD_GUILD_ID=` with no value, as .env.example writes an optional id, means unset
        env_ignore_empty=True,
    )

    # -- files and folders
    data_dir: Path = Path("data")
    characters_dir: Path = Path("characters")
    workflows_dir: Path = Path("workflows")
    #: your own description templates (image/NAME.md, video/NAME.md) and styles.yaml
    templates_dir: Path = Path("templates")
    log_level: str = "INFO"
    #: a failed, expired or cancelled run's media folder is removed this many days after the
    #: run's last update (`python -m pipeline prune`, and the bot once a day); 0 keeps them
    media_retention_days: float = Field(default=30, ge=0)

    # -- database: empty means SQLite at DATA_DIR/mediaoverload.db; mysql://user:pass@host:port/db
    database_url: SecretStr = SecretStr("")

    # -- ComfyUI: comma-separated URLs; '#video' after a URL tags a server's capabilities
    comfyui_servers: CommaList = Field(default_factory=lambda: ["http://127.0.0.1:8188"])
    #: a running job with no message for this long is asked after, and given up if stuck
    comfyui_stall_seconds: float = Field(default=300.0, gt=0)
    #: the longest a job may take from submit to its outputs, however busy the server is
    comfyui_job_timeout_seconds: float = Field(default=6 * 3600.0, gt=0)
    #: each output file must arrive whole within this long, and at least this fast (KB/s over
    #: each 30 s; 0: no minimum), so a server that trickles fails instead of holding the run
    comfyui_download_timeout_seconds: float = Field(default=1800.0, gt=0)
    comfyui_download_min_kb_per_second: float = Field(default=32.0, ge=0)
    #: the largest output file taken, and the most files one job may report
    comfyui_download_max_mb: float = Field(default=2048.0, gt=0)
    comfyui_max_outputs_per_job: int = Field(default=100, ge=1)
    #: the largest WebSocket message and JSON answer read; /object_info has its own cap
    comfyui_ws_max_message_mb: float = Field(default=64.0, gt=0)
    comfyui_answer_max_mb: float = Field(default=64.0, gt=0)
    comfyui_object_info_max_mb: float = Field(default=128.0, gt=0)

    # ======================================================================== Discord
    # Everything the bot reads; docs/settings-discord.md explains each one.
    discord_token: SecretStr | None = None
    #: REST base; the gateway URL is asked of `{base}/gateway/bot`. Tests point it at a fake.
    discord_api_base: str = "https://discord.com/api/v10"
    #: sync the slash commands to this guild only (they show at once); unset: globally
    discord_guild_id: int | None = None
    #: the guild sticker packs are uploaded to (with DISCORD_TOKEN); unset: DISCORD_GUILD_ID
    discord_sticker_guild_id: int | None = None
    discord_review_channel_id: int | None = None
    #: notices go to this channel, or to the webhook when one is set
    discord_notify_channel_id: int | None = None
    discord_notify_webhook_url: SecretStr | None = None
    #: who may use what: comma-separated role ids; empty means every member of the guild
    discord_generate_role_ids: IdList = Field(default_factory=list)
    discord_review_role_ids: IdList = Field(default_factory=list)
    discord_admin_role_ids: IdList = Field(default_factory=list)
    #: a review nobody answers becomes `expired` after this long; the reminder comes before
    review_timeout_minutes: float = Field(default=24 * 60, gt=0)
    review_reminder_minutes: float = Field(default=60, ge=0)
    #: Discord's upload limit for a bot without boosts is 10 MiB; larger files get a preview
    #: (`pipeline.previews`); any positive size, so tests can take the preview path cheaply
    discord_upload_limit_mb: float = Field(default=10, gt=0, le=500)
    #: x264's speed for the videos made here (fitted for a platform, a narrated reel joined):
    #: a slower preset makes a smaller file of the same quality for more CPU time
    video_preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"
    ] = "veryfast"
    #: the run card is edited at most once per this many seconds (Discord rate-limits edits)
    discord_card_edit_seconds: float = Field(default=1.5, ge=0.05)
    #: after connecting, discord.py waits this long past the last guild's GUILD_CREATE for
    #: more guilds before the bot is ready (reviews and cards start then); a bot in one guild
    #: can wait less
    discord_guild_ready_seconds: float = Field(default=2.0, ge=0.05, le=60)
    #: the hourly schedule: on/off, and the minute past each UTC hour it ticks at
    schedule_enabled: bool = True
    schedule_minute: int = Field(default=0, ge=0, le=59)
    #: runs at once (in all), of one character, and of one person; more wait in a queue
    max_runs: int = Field(default=3, ge=1)
    max_runs_per_character: int = Field(default=1, ge=1)
    max_runs_per_user: int = Field(default=2, ge=1)
    #: /generate's and `run`'s `count`: at most this many images per description
    generate_max_count: int = Field(default=8, ge=1, le=64)
    #: an input image (/generate's `image`, `run --image`): its size in MB and megapixels at
    #: most, and how long a download from Discord may take
    input_image_max_mb: float = Field(default=20.0, gt=0, le=500)
    input_image_max_megapixels: float = Field(default=40.0, gt=0, le=400)
    input_image_download_seconds: float = Field(default=60.0, gt=0)
    #: on SIGTERM running runs get this long to reach their next save, then are cancelled
    #: (they resume from their last saved step); under Docker's default 10 s stop timeout
    shutdown_grace_seconds: float = Field(default=8.0, ge=0)
    #: a run is executed only under its lease in the store, renewed every third of this; a
    #: process that stops renewing (killed, cut off from the database) loses the run after it
    run_lease_seconds: float = Field(default=90.0, ge=1)
    #: how often the bot takes up its runs whose lease ran out (another instance died)
    run_adopt_seconds: float = Field(default=180.0, gt=0)
    # ==================================================================== end of Discord

    # ------------------------------------------------------------ publishing (docs/publishing.md)
    # -- where `credentials: NAME` of a character is looked up as NAME.json (after the environment)
    credentials_dir: Path = Path("credentials")
    # -- transient failures (timeouts, 5xx, 429): retries after the first try, first backoff
    #    in seconds (doubled each time), and the longest wait a 429 may ask for before giving up
    publish_retries: int = Field(default=3, ge=0, le=10)
    publish_backoff_seconds: float = Field(default=5.0, ge=0)
    publish_max_wait_seconds: float = Field(default=900.0, ge=0)
    #: the publish queue: how often the bot looks for due posts, and how long a claim on one
    #: holds before another instance may take the post up (its post record still keeps it once)
    publish_queue_seconds: float = Field(default=60.0, ge=1, le=3600)
    publish_claim_seconds: float = Field(default=3600.0, ge=60)
    # -- Instagram (instagrapi): pause before each private request, and before configuring an
    #    uploaded album or reel, in seconds (instagrapi's own defaults; lower looks like a bot)
    instagram_request_delay: float = Field(default=1.0, ge=0)
    instagram_configure_delay: float = Field(default=3.0, ge=0)
    # -- Instagram: the deadline of each request, a whole video upload included, in seconds
    instagram_timeout_seconds: float = Field(default=300.0, gt=0)
    # -- X: the root of every X API call (tests and proxies move it), the upload chunk size in
    #    bytes (X takes <= 5 MB), the deadline of each X call (connect to the last byte of the
    #    answer), and how long to wait for X to process a video before giving up
    x_api_url: str = "https://api.x.com"
    x_chunk_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=5 * 1024 * 1024)
    x_timeout_seconds: float = Field(default=60.0, gt=0)
    x_processing_timeout_seconds: float = Field(default=600.0, gt=0)
    # -- Bluesky: the service (PDS or entryway) of every call (tests move it to the fake), and
    #    the deadline of each call (a session, an image upload, the post, a feed page)
    bluesky_service_url: str = "https://bsky.social"
    bluesky_timeout_seconds: float = Field(default=60.0, gt=0)
    # -- Meta's Graph API (Facebook Pages): the root of every call (tests move it to the fake),
    #    the deadline of each call, and of each upload of a photo or video file
    graph_api_url: str = "https://graph.facebook.com"
    threads_api_url: str = "https://graph.threads.net"
    graph_timeout_seconds: float = Field(default=60.0, gt=0)
    graph_upload_timeout_seconds: float = Field(default=600.0, gt=0)
    # -- how long an Instagram or Threads media container may take to be FINISHED
    graph_processing_timeout_seconds: float = Field(default=300.0, gt=0)
    # -- the image host that gives local files a public URL (Instagram Graph, Threads):
    #    none, cloudinary or s3; the deadline of each upload or removal
    image_host: Literal["none", "cloudinary", "s3"] = "none"
    image_host_timeout_seconds: float = Field(default=120.0, gt=0)
    # -- Cloudinary: the cloud's name, API key and secret, and the API root (tests move it)
    cloudinary_cloud_name: str = ""
    cloudinary_api_key: str = ""
    cloudinary_api_secret: SecretStr = SecretStr("")
    cloudinary_api_url: str = "https://api.cloudinary.com"
    # -- an S3-compatible bucket: its name, the endpoint (empty: AWS), region, keys, and the
    #    bucket's public address (empty: presigned URLs, valid a day)
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_public_url: str = ""

    # ------------------------------------------------------------ language models (issue 4)
    # docs/settings-llm.md describes each one.
    # -- which providers, in order, per task (ollama, openrouter, gemini); empty: LLM_CHAIN
    llm_chain: CommaList = Field(default_factory=lambda: ["ollama", "openrouter", "gemini"])
    llm_chain_prompt: CommaList = Field(default_factory=list)
    llm_chain_description: CommaList = Field(default_factory=list)
    llm_chain_vision: CommaList = Field(default_factory=list)
    llm_chain_caption: CommaList = Field(default_factory=list)
    # -- limits shared by every provider
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_vision_timeout_s: float = Field(default=120.0, gt=0)
    llm_attempts: int = Field(default=3, ge=1, le=10)
    llm_backoff_s: float = Field(default=1.0, ge=0)
    llm_backoff_max_s: float = Field(default=30.0, ge=0)
    llm_retry_after_max_s: float = Field(default=60.0, ge=0)
    llm_failures_before_cooldown: int = Field(default=3, ge=1)
    llm_cooldown_s: float = Field(default=300.0, ge=0)
    # -- the most tokens an answer may take, per task (a cut answer fails that provider): room
    #    for the answer and for a reasoning model's thinking, which counts against it
    llm_max_tokens_prompt: int = Field(default=2048, ge=16)
    llm_max_tokens_description: int = Field(default=4096, ge=16)
    llm_max_tokens_vision: int = Field(default=1024, ge=16)
    llm_max_tokens_caption: int = Field(default=2048, ge=16)
    #: a model's answer larger than this (the whole HTTP body) fails that provider unread
    llm_max_answer_kb: int = Field(default=256, ge=4, le=64 * 1024)
    # -- Ollama
    ollama_host: str = "http://127.0.0.1:11434"
    ollama_api_key: SecretStr | None = None
    ollama_model: str = "qwen3:8b"
    ollama_vision_model: str = "qwen2.5vl:7b"
    ollama_prompt_model: str = ""
    ollama_description_model: str = ""
    ollama_caption_model: str = ""
    ollama_rpm: float = Field(default=0.0, ge=0)
    ollama_json_mode: Literal["auto", "schema", "object", "off"] = "auto"
    # -- OpenRouter, or any OpenAI-compatible server
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openrouter_api_key: SecretStr | None = None
    openrouter_model: str = "openai/gpt-4o-mini"
    openrouter_vision_model: str = "openai/gpt-4o-mini"
    openrouter_prompt_model: str = ""
    openrouter_description_model: str = ""
    openrouter_caption_model: str = ""
    openrouter_rpm: float = Field(default=20.0, ge=0)
    #: the old switch: false still means OPENROUTER_JSON_MODE=off when that is left at auto
    openrouter_json_schema: bool | None = None
    openrouter_json_mode: Literal["auto", "schema", "object-schema", "object", "off"] = Field(
        default="auto", validate_default=True
    )
    # -- speech for narrated videos (text2longvideo): an OpenAI-compatible /audio/speech API
    #: the base URL (https://api.openai.com/v1, or a local server's); empty: no speech endpoint
    speech_url: str = ""
    speech_api_key: SecretStr | None = None
    speech_model: str = "tts-1"
    #: the voice when a character names none (`longvideo.voice`)
    speech_voice: str = "alloy"
    #: one scene's speech must arrive within this long, and be at most this large
    speech_timeout_seconds: float = Field(default=120.0, gt=0)
    speech_max_mb: float = Field(default=32.0, gt=0, le=1024)
    # -- Google Gemini
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str = ""
    gemini_model: str = "gemini-2.5-flash"
    gemini_vision_model: str = "gemini-2.5-flash"
    gemini_prompt_model: str = ""
    gemini_description_model: str = ""
    gemini_caption_model: str = ""
    gemini_rpm: float = Field(default=10.0, ge=0)
    gemini_json_mode: Literal["auto", "schema", "object", "off"] = "auto"
    # -- vision scoring
    vision_concurrency: int = Field(default=4, ge=1, le=64)
    vision_max_side: int = Field(default=1024, ge=64, le=4096)
    vision_video_frames: int = Field(default=3, ge=1, le=12)

    @field_validator(
        "comfyui_servers",
        "llm_chain",
        "llm_chain_prompt",
        "llm_chain_description",
        "llm_chain_vision",
        "llm_chain_caption",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator(
        "discord_generate_role_ids",
        "discord_review_role_ids",
        "discord_admin_role_ids",
        mode="before",
    )
    @classmethod
    def _id_list(cls, value: Any) -> Any:
        if isinstance(value, int):
            return [value]
        return _split_commas(value)

    @field_validator("comfyui_servers")
    @classmethod
    def _servers(cls, servers: list[str]) -> list[str]:
        """Each URL parses as comfy's pool will parse it, checked once here at start."""
        from comfy import ServerSpec

        if not servers:
            raise ValueError("name at least one ComfyUI URL, like http://127.0.0.1:8188")
        for text in servers:
            ServerSpec.parse(text)  # its ValueError names the URL that is wrong
        return servers

    @field_validator("openrouter_json_mode")
    @classmethod
    def _old_json_switch(cls, value: str, info: ValidationInfo) -> str:
        if value == "auto" and info.data.get("openrouter_json_schema") is False:
            return "off"
        return value

    @field_validator("comfyui_job_timeout_seconds")
    @classmethod
    def _job_outlasts_a_stall(cls, value: float, info: ValidationInfo) -> float:
        stall = info.data.get("comfyui_stall_seconds")
        if isinstance(stall, float) and value <= stall:
            raise ValueError(f"must be longer than COMFYUI_STALL_SECONDS ({stall:g} s)")
        return value

    @field_validator("discord_api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL like https://discord.com/api/v10")
        return value.rstrip("/")

    @property
    def discord_upload_limit(self) -> int:
        """The upload limit in bytes."""
        return int(self.discord_upload_limit_mb * 1024 * 1024)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @property
    def sessions_dir(self) -> Path:
        """Where Instagram session settings are kept per account (secret: mode 0600)."""
        return self.data_dir / "sessions"

    @property
    def attention_dir(self) -> Path:
        """Where a paused account's "needs attention" marker is kept."""
        return self.data_dir / "attention"

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
