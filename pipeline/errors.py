"""The pipeline's error tree; every error carries a user-safe sentence apart from its log text.

    MediaOverloadError          .user_message is safe for Discord; str() may hold more, for logs
    ├── ConfigError             a setting is missing or wrong (names the variable)
    ├── CharacterError          a character file is wrong (file, line, key path, message)
    │   └── CharacterNotFound   no character file of that name
    ├── StoreError              the database failed after its retries (exit 2)
    │   └── StoreFileError      the embedded database's file or folder cannot be used (exit 1)
    ├── DiskError               a folder we write is full, read-only or not a folder; the
    │                           OSError behind it told from a socket's by `disk_reason`
    ├── ServiceError            an outside service (ComfyUI, a model, a platform) failed
    │   ├── ModelError          every language / vision provider failed
    │   └── PublishError        a platform refused or failed a post
    ├── RunError                a run cannot go on (bad state, cancelled, nothing to publish)
    └── ReviewUnavailable       no reviewer can answer now (no terminal): the run stays in review

Imports nothing from the project.
"""

from __future__ import annotations

import errno
import socket
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


class StoreFileError(StoreError):
    """The embedded database cannot be used as it is: its file is damaged or not a database,
    or its folder cannot be written. Bad input (exit 1): retrying cannot help, a person can."""

    def __init__(self, message: str) -> None:
        super().__init__(message, user_message=message)


#: errno -> how a person reads it, for the OSErrors that mean the disk, not the network
_DISK_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EMLINK: "too many links",
}
#: errors a socket never gives: with or without a file name, they are the disk's
_ONLY_DISKS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def disk_reason(exc: BaseException) -> str | None:
    """Why a write to disk failed ("no space left on device"), or None when `exc` is not a
    disk's error (a socket's, a timeout, anything else): the two are never confused."""
    if not isinstance(exc, OSError) or isinstance(
        exc, ConnectionError | TimeoutError | socket.gaierror | socket.herror
    ):
        return None
    if type(exc).__module__.split(".")[0] in {"aiohttp", "ssl", "socket"}:
        return None  # aiohttp's ClientOSError carries the socket's errno
    reason = _DISK_REASONS.get(exc.errno or 0)
    if reason is None or (exc.filename is None and exc.errno not in _ONLY_DISKS):
        return None
    return reason


#: disk errors that may pass by themselves (space freed, a disk back): a service failure,
#: exit 2; every other disk error (read-only, a file in the way, permissions) needs a person
#: to fix a folder or a setting: bad input, exit 1
_PASSING = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def disk_exit_code(exc: OSError) -> int:
    """The README's exit code for a disk's error: 2 when it may pass (full, quota, I/O), else 1."""
    return 2 if exc.errno in _PASSING else 1


class DiskError(MediaOverloadError):
    """A folder or file the pipeline writes cannot be written (full, quota, read-only, a file
    in the way). The run keeps its last saved step and can be resumed once it is fixed."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        message = (
            f"cannot write {where}: {reason}; the run is kept and can be resumed once that is fixed"
        )
        super().__init__(message, user_message=message)


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
