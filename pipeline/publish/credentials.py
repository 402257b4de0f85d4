"""Credentials per character and platform: a name resolved from the environment or a JSON file.

A character's `credentials: NAME` is looked up key by key: first the variable `NAME_KEY` (NAME
upper-cased, other characters as `_`) in the environment or `.env`, then the key `key` in
`CREDENTIALS_DIR/NAME.json`. Values live only as SecretStr; nothing here logs or echoes one.
Imports settings, characters and domain modules only.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import SecretStr

from pipeline.characters import Character
from pipeline.errors import ConfigError, Problem
from pipeline.models import Platform
from pipeline.settings import Settings

#: the keys each platform needs (and, for Instagram, the optional TOTP secret)
#: an Instagram account posted to through the official Graph API instead of instagrapi: its
#: professional account's id and an access token (the presence of either chooses this backend)
INSTAGRAM_GRAPH_KEYS = ("ig_user_id", "access_token")
REQUIRED_KEYS = {
    Platform.INSTAGRAM: ("username", "password"),
    Platform.TWITTER: ("api_key", "api_secret", "access_token", "access_secret"),
    Platform.BLUESKY: ("handle", "app_password"),
    Platform.FACEBOOK: ("page_id", "page_access_token"),
    Platform.THREADS: ("user_id", "access_token"),
}
OPTIONAL_KEYS = {
    # proxy: instagrapi's set_proxy URL, which may carry a password (the reference's IG_PROXY)
    Platform.INSTAGRAM: ("totp_secret", "proxy", *("ig_user_id", "access_token")),
    Platform.TWITTER: (),
    Platform.BLUESKY: (),
    Platform.FACEBOOK: (),
    Platform.THREADS: (),
}


@dataclass(frozen=True)
class InstagramCredentials:
    username: str
    password: SecretStr
    #: the base32 seed of the account's authenticator app, for two-factor login
    totp_secret: SecretStr | None = None
    #: the account's own proxy (`http://user:pass@host:port`, socks5://...), for instagrapi's
    #: set_proxy; a secret, since it may hold a password
    proxy: SecretStr | None = None


@dataclass(frozen=True)
class TwitterCredentials:
    """OAuth 1.0a user context: the app's key and secret, the account's token and secret."""

    api_key: SecretStr
    api_secret: SecretStr
    access_token: SecretStr
    access_secret: SecretStr


@dataclass(frozen=True)
class BlueskyCredentials:
    """The account's handle (or e-mail) and an app password (Settings > App passwords), never
    the account's main password."""

    handle: str
    app_password: SecretStr


@dataclass(frozen=True)
class FacebookCredentials:
    """A Facebook Page's id and a Page access token (a long-lived one, made from a long-lived
    user token) with pages_manage_posts, pages_read_engagement and pages_show_list."""

    page_id: str
    page_access_token: SecretStr


@dataclass(frozen=True)
class InstagramGraphCredentials:
    """An Instagram professional account's id and an access token (a long-lived user or Page
    token with instagram_basic, instagram_content_publish, instagram_manage_insights and
    pages_read_engagement)."""

    ig_user_id: str
    access_token: SecretStr


@dataclass(frozen=True)
class ThreadsCredentials:
    """A Threads user's id and a long-lived Threads access token with threads_basic,
    threads_content_publish and threads_manage_insights."""

    user_id: str
    access_token: SecretStr


def _required(platform: Platform, found: Mapping[str, str]) -> tuple[str, ...]:
    """The keys an account needs: an Instagram account with either Graph key is a Graph one."""
    if platform is Platform.INSTAGRAM and any(key in found for key in INSTAGRAM_GRAPH_KEYS):
        return INSTAGRAM_GRAPH_KEYS
    return REQUIRED_KEYS[platform]


def env_prefix(name: str) -> str:
    """`my-fox.insta` -> `MY_FOX_INSTA`: the variable prefix of a credentials name."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def session_path(settings: Settings, platform: Platform, name: str) -> Path:
    """Where a platform's saved login of credentials `name` lives."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return settings.sessions_dir / f"{platform.value}-{safe}.json"


def default_environ(env_file: Path | None = Path(".env")) -> dict[str, str]:
    """The process environment over the `.env` file's values (as pydantic-settings reads)."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        from dotenv import dotenv_values

        values = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    return {**values, **os.environ}


class CredentialStore:
    """Looks credentials up by name; build once per process with the settings."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = dict(environ) if environ is not None else default_environ()

    def file_of(self, name: str) -> Path:
        return self.settings.credentials_dir / f"{name}.json"

    def _lookup(self, name: str, platform: Platform) -> tuple[dict[str, str], list[str]]:
        """The values found, and a description of each problem (never a value)."""
        keys = REQUIRED_KEYS[platform] + OPTIONAL_KEYS[platform]
        prefix = env_prefix(name)
        found: dict[str, str] = {}
        problems: list[str] = []
        file_values: dict[str, object] = {}
        path = self.file_of(name)
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                problems.append(f"{path} is not readable JSON")
            else:
                if isinstance(loaded, dict):
                    file_values = loaded
                else:
                    problems.append(f"{path} must hold one JSON object")
        for key in keys:
            value = self.environ.get(f"{prefix}_{key.upper()}") or file_values.get(key)
            if isinstance(value, str) and value.strip():
                found[key] = value.strip()
        missing = [key for key in _required(platform, found) if key not in found]
        if missing:
            variables = ", ".join(f"{prefix}_{key.upper()}" for key in missing)
            verb = "is" if len(missing) == 1 else "are"
            problems.append(f"{variables} {verb} not set (in the environment, .env or {path})")
        return found, problems

    def problems(self, name: str, platform: Platform) -> list[str]:
        return self._lookup(name, platform)[1]

    def instagram(self, name: str) -> InstagramCredentials:
        found, problems = self._lookup(name, Platform.INSTAGRAM)
        if problems:
            raise ConfigError(f"Instagram credentials {name!r}: " + "; ".join(problems))
        totp = found.get("totp_secret")
        return InstagramCredentials(
            username=found["username"],
            password=SecretStr(found["password"]),
            totp_secret=SecretStr(totp.replace(" ", "")) if totp else None,
            proxy=SecretStr(found["proxy"]) if found.get("proxy") else None,
        )

    def instagram_backend(self, name: str) -> str:
        """`graph` when the account's credentials name a Graph account, else `instagrapi`."""
        found, _ = self._lookup(name, Platform.INSTAGRAM)
        return "graph" if any(key in found for key in INSTAGRAM_GRAPH_KEYS) else "instagrapi"

    def instagram_graph(self, name: str) -> InstagramGraphCredentials:
        found, problems = self._lookup(name, Platform.INSTAGRAM)
        if problems:
            raise ConfigError(f"Instagram credentials {name!r}: " + "; ".join(problems))
        return InstagramGraphCredentials(
            ig_user_id=found["ig_user_id"], access_token=SecretStr(found["access_token"])
        )

    def twitter(self, name: str) -> TwitterCredentials:
        found, problems = self._lookup(name, Platform.TWITTER)
        if problems:
            raise ConfigError(f"X credentials {name!r}: " + "; ".join(problems))
        return TwitterCredentials(
            api_key=SecretStr(found["api_key"]),
            api_secret=SecretStr(found["api_secret"]),
            access_token=SecretStr(found["access_token"]),
            access_secret=SecretStr(found["access_secret"]),
        )

    def bluesky(self, name: str) -> BlueskyCredentials:
        found, problems = self._lookup(name, Platform.BLUESKY)
        if problems:
            raise ConfigError(f"Bluesky credentials {name!r}: " + "; ".join(problems))
        return BlueskyCredentials(
            handle=found["handle"].lstrip("@"), app_password=SecretStr(found["app_password"])
        )

    def facebook(self, name: str) -> FacebookCredentials:
        found, problems = self._lookup(name, Platform.FACEBOOK)
        if problems:
            raise ConfigError(f"Facebook credentials {name!r}: " + "; ".join(problems))
        return FacebookCredentials(
            page_id=found["page_id"], page_access_token=SecretStr(found["page_access_token"])
        )

    def threads(self, name: str) -> ThreadsCredentials:
        found, problems = self._lookup(name, Platform.THREADS)
        if problems:
            raise ConfigError(f"Threads credentials {name!r}: " + "; ".join(problems))
        return ThreadsCredentials(
            user_id=found["user_id"], access_token=SecretStr(found["access_token"])
        )


def _line_of(path: Path, keys: Sequence[str]) -> int | None:
    """The 1-based line of a nested key in a YAML file (None when it cannot be found)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return line
        for key_node, value_node in node.value:
            if key_node.value == key:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            return line
    return line


def check_credentials(
    character: Character, settings: Settings, *, environ: Mapping[str, str] | None = None
) -> list[Problem]:
    """Every problem with the credentials of a character's enabled platforms: missing keys, an
    unreadable or world-readable session file. Names variables and files, never values."""
    store = CredentialStore(settings, environ)
    try:
        shown = str(character.path.resolve().relative_to(character.root.resolve()))
    except ValueError:
        shown = str(character.path)
    problems: list[Problem] = []
    for platform, config in character.enabled_platforms().items():
        keys = ("social_media", "platforms", platform.value, "credentials")
        line = _line_of(character.path, keys)

        def add(message: str, line: int | None = line, key: str = ".".join(keys)) -> None:
            problems.append(Problem(shown, line, key, message))

        for message in store.problems(config.credentials, platform):
            add(message)
        by_url = platform is Platform.THREADS or (
            platform is Platform.INSTAGRAM
            and store.instagram_backend(config.credentials) == "graph"
        )
        if by_url and settings.image_host == "none":
            add(
                "this account's images are fetched by URL, so IMAGE_HOST must name an image"
                " host (cloudinary or s3; docs/publishing.md#the-image-host)"
            )
        if platform is Platform.INSTAGRAM:
            session = session_path(settings, platform, config.credentials)
            if session.exists():
                try:
                    data = json.loads(session.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                    add(f"session file {session} is not readable: delete it to log in afresh")
                else:
                    if not isinstance(data, dict) or "uuids" not in data:
                        add(f"session file {session} is not an instagrapi session")
                mode = session.stat().st_mode
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    add(f"session file {session} is readable by others: chmod 600 it")
    return problems
