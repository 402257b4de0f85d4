"""The pipeline's error tree; every error carries a user-safe sentence apart from its log text.

    MediaOverloadError          .user_message is safe for Discord; str() may hold more, for logs
    ├── ConfigError             a setting is missing or wrong (names the variable)
    ├── CharacterError          a character file is wrong (file, line, key path, message)
    │   └── CharacterNotFound   no character file of that name
    ├── StoreError              the database failed after its retries
    ├── ServiceError            an outside service (ComfyUI, a model, a platform) failed
    │   ├── ModelError          every language / vision provider failed
    │   └── PublishError        a platform refused or failed a post
    ├── RunError                a run cannot go on (bad state, cancelled, nothing to publish)
    └── ReviewUnavailable       no reviewer can answer now (no terminal): the run stays in review

Imports nothing from the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class MediaOverloadError(Exception):
    """Base of every error the project raises on purpose."""

    #: the sentence shown to people; subclasses make it specific, never from foreign text
    user_message: str = "Something went wrong."

    def __init__(self, message: str, *, user_message: str | None = None) -> None:
        super().__init__(message)
        if user_message is not None:
            self.user_message = user_message


class ConfigError(MediaOverloadError):
    """A setting is missing or invalid; the message names the environment variable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where, which key, what."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class CharacterError(MediaOverloadError):
    """A character file is invalid; holds every problem found, each with file, line and key."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        text = "\n".join(str(p) for p in self.problems)
        super().__init__(text, user_message=text)


class CharacterNotFound(MediaOverloadError):
    """No character of that name exists in the characters folder."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        listing = ", ".join(known) if known else "none"
        message = f"no character named {name!r} (known: {listing})"
        super().__init__(message, user_message=message)
        self.name = name


class StoreError(MediaOverloadError):
    """The database could not do what was asked, after its retries."""

    user_message = "The database is not answering; the run is kept and can be retried."


class ServiceError(MediaOverloadError):
    """An outside service failed; str() is for logs, user_message for people."""

    user_message = "An outside service failed; the run is kept and can be retried."


class ModelError(ServiceError):
    """Every language or vision provider failed for one task."""

    user_message = "No language model answered; the run is kept and can be retried."


class PublishError(ServiceError):
    """A platform refused or failed a post."""

    user_message = "Publishing failed; the run is kept and can be retried."


class RunError(MediaOverloadError):
    """A run cannot go on as asked (bad state, cancelled, nothing left to publish)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)


class ReviewUnavailable(MediaOverloadError):
    """The reviewer cannot answer now (standard input ended: cron, a pipe, Ctrl-D); the run is
    not failed but left awaiting review, for a later `resume`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)
