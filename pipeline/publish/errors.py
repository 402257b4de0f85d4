"""The three kinds of publishing failure, and a scrubber for text that came from a platform.

    PublishError                   (pipeline.errors)
    ├── TransientPublishError      timeout, 5xx, 429: try again after a wait (retry_after);
    │                              maybe_posted when the post itself may have gone through
    ├── AccountAttentionError      401, expired session, challenge, feedback block: pause the
    │                              account and tell a person; never retried by itself
    ├── AccessLevelError           the app's API access level lacks the call (X's 453): not a
    │                              login and not the account; fails, pauses nothing
    └── ContentRejectedError       caption too long, media refused: fails at once, with the
                                   platform's own (scrubbed) message as the user message

Imports only the project's error tree.
"""

from __future__ import annotations

import re

from pipeline.errors import PublishError

_SECRETISH = re.compile(
    r"(?i)(bearer\s+\S+|oauth_\w+=\S+|(sessionid|csrftoken|ds_user_id|token|secret|password)"
    r"[\"']?\s*[:=]\s*[\"']?[^\s,;\"'}]+|https?://\S+)"
)


def scrub(text: object, *, limit: int = 300) -> str:
    """A platform's message made safe to show: no URLs, tokens or cookies, one line, short."""
    cleaned = _SECRETISH.sub("[removed]", str(text))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class TransientPublishError(PublishError):
    """Worth another try later: the platform was busy, slow or briefly broken."""

    # what happens next (a retry, a check, or nothing) is the publish service's to say
    user_message = "The platform is busy or unreachable."

    def __init__(
        self, message: str, *, retry_after: float | None = None, maybe_posted: bool = False
    ) -> None:
        super().__init__(message)
        #: seconds the platform asked us to wait (429), or None for our own backoff
        self.retry_after = retry_after
        #: True when the failing call was the post itself, so it may be online anyway
        self.maybe_posted = maybe_posted


class AccountAttentionError(PublishError):
    """The account cannot post until a person acts (log in, solve a challenge, wait out a
    block). The account is paused; nothing retries it."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, user_message=f"The account needs attention: {reason}")
        self.reason = reason


class AccessLevelError(PublishError):
    """The platform's API access of this app does not include the call (X answers 403 with
    code 453, or a `client-forbidden` problem). The credentials are fine and the account is
    not at fault, so nothing is paused; a person changes the access level or does without."""

    def __init__(self, message: str, *, call: str, needed: str | None = None) -> None:
        level = f"; it needs the {scrub(needed, limit=40)} access level or higher" if needed else ""
        super().__init__(
            message,
            user_message=f"X's API access of this app does not include {call}{level}.",
        )
        self.needed = needed


class ContentRejectedError(PublishError):
    """The platform refused this post as it is; trying again unchanged will not help."""

    def __init__(self, message: str, *, platform_message: str) -> None:
        safe = scrub(platform_message)
        super().__init__(message, user_message=f"The platform refused the post: {safe}")
        self.platform_message = safe
