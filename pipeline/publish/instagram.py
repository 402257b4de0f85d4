"""Instagram through instagrapi (the private mobile API), in a worker thread.

Logs in once per account and keeps the session settings in a file (mode 0600) that later
posts and restarts reuse; two-factor codes come from the account's TOTP secret. Photo, album
(carousel) and reel with a cover. Challenge, login and feedback errors are reported as
"account needs attention" (never answered or retried here: the interactive challenge flow
is switched off), and so is a login instagrapi cannot finish (its Bloks two-step included).
Every request has a deadline (INSTAGRAM_TIMEOUT_SECONDS) and a cap on its answer: instagrapi
sends its private API through curl with no timeout and its public session through requests with
none, so both transports are replaced by bounded ones. The untyped library stays inside this
module. Imports domain modules, instagrapi, curl_cffi's options and requests (the errors
instagrapi's transport passes on unwrapped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from curl_cffi import CurlOpt
from instagrapi import Client
from instagrapi import exceptions as ig
from instagrapi.extractors import extract_media_v1
from instagrapi.transports import _CurlH2Adapter

from pipeline.errors import disk_reason
from pipeline.models import MediaKind, Platform
from pipeline.ports import OutgoingMedia, PostMetrics, RemotePost
from pipeline.publish.credentials import InstagramCredentials
from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
    scrub,
)
from pipeline.publish.http import BoundedAdapter, Limits

log = logging.getLogger(__name__)

#: Instagram's media_type of a video or reel (1 is a photo, 8 an album)
VIDEO_MEDIA_TYPE = 2

MAX_ALBUM = 10
CAPTION_LIMIT = 2200
#: Instagram's answers are JSON; the largest read here, 20 posts of `feed/user/`, is well
#: under a megabyte
MAX_ANSWER_BYTES = 8 * 1024 * 1024

#: errors after which only a person can help: pause the account
_ATTENTION: tuple[type[Exception], ...] = (
    ig.ChallengeError,
    ig.LoginRequired,
    ig.ClientLoginRequired,
    ig.FeedbackRequired,
    ig.BadPassword,
    ig.BadCredentials,
    ig.TwoFactorRequired,
    ig.ReloginAttemptExceeded,
    ig.ClientUnauthorizedError,
    ig.AccountSuspended,
    ig.SentryBlock,
    ig.CaptchaChallengeRequired,
    ig.ProxyAddressIsBlocked,
)
_RATE: tuple[type[Exception], ...] = (
    ig.PleaseWaitFewMinutes,
    ig.ClientThrottledError,
    ig.RateLimitError,
)
_NETWORK: tuple[type[Exception], ...] = (
    ig.ClientConnectionError,
    ig.ClientRequestTimeout,
    ig.ClientIncompleteReadError,
    ig.ClientJSONDecodeError,
)
#: raised when configure answered but the new media was not visible: it may be online
_CONFIGURE_UNCLEAR: tuple[type[Exception], ...] = (
    ig.PhotoConfigureError,
    ig.ClipConfigureError,
    ig.AlbumConfigureError,
)
#: a wait Instagram's "please wait a few minutes" does not state; ours, in seconds
RATE_WAIT = 300.0


def _refuse_interaction(*_: object, **__: object) -> str:
    raise ig.ChallengeRequired(message="challenge_required")


class _BoundedCurlAdapter(_CurlH2Adapter):  # type: ignore[misc]  # instagrapi is untyped
    """instagrapi's curl HTTP/2 transport with a deadline per request (curl's total timeout:
    connect, upload and answer) and a cap on the answer (curl's maximum file size)."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits
        self.client.curl_options[CurlOpt.MAXFILESIZE_LARGE] = limits.max_answer_bytes

    def send(self, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:
        # curl_cffi reads (connect, read) as connect and a total of the two (not streamed)
        connect = min(self.limits.connect, self.limits.deadline / 2)
        total = (connect, self.limits.deadline - connect)
        return super().send(request, stream=stream, timeout=total, **kwargs)


class _Client(Client):  # type: ignore[misc]  # instagrapi is untyped
    """instagrapi's Client that remembers which private endpoint it called last, so a failure
    on `media/configure*` (the post itself) can be told from one during the upload, and whose
    two sessions (private: curl; public: requests) bound every request by `limits`."""

    last_endpoint: str = ""

    def __init__(self, limits: Limits, **kwargs: Any) -> None:
        self.limits = limits  # before instagrapi's __init__, which mounts the transports
        super().__init__(**kwargs)

    def private_request(self, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        self.last_endpoint = endpoint
        return super().private_request(endpoint, *args, **kwargs)

    def _configure_private_session_retry(self, private_transport: Any = None) -> None:
        """Mount the bounded curl transport, whatever transport a session file names
        (instagrapi calls this at start and again when settings are loaded)."""
        if isinstance(self.private.adapters.get("https://"), _BoundedCurlAdapter):
            return
        previous = set(self.private.adapters.values())
        adapter = _BoundedCurlAdapter(self.limits)
        self.private.mount("https://", adapter)
        self.private.mount("http://", adapter)
        self.private_transport = self._private_adapter_transport = "curl"
        for old in previous:
            old.close()

    def _configure_public_session_retry(self) -> None:
        """The public session (the password key of a fresh login): bounded, never retried."""
        adapter = BoundedAdapter(self.limits)
        self.public.mount("https://", adapter)
        self.public.mount("http://", adapter)


def _platform_text(exc: Exception) -> str:
    """What Instagram said, from the fields it answers with (never the raw response)."""
    for field in ("feedback_message", "error_title", "message"):
        value = getattr(exc, field, None)
        if isinstance(value, str) and value:
            return value
    return type(exc).__name__


def classify(exc: Exception, *, during_configure: bool) -> Exception:
    """The publishing error for an instagrapi exception."""
    name = type(exc).__name__
    said = scrub(_platform_text(exc))
    if isinstance(exc, _ATTENTION):
        return AccountAttentionError(f"Instagram {name}: {said}", reason=f"{name}: {said}")
    if isinstance(exc, _RATE):
        return TransientPublishError(f"Instagram {name}", retry_after=RATE_WAIT)
    if isinstance(exc, _CONFIGURE_UNCLEAR):
        return TransientPublishError(f"Instagram {name}: {said}", maybe_posted=True)
    if isinstance(exc, (*_NETWORK, requests.RequestException)):
        # requests' errors: what instagrapi passes on unwrapped (a deadline, a cut-off answer)
        return TransientPublishError(f"Instagram {name}", maybe_posted=during_configure)
    if isinstance(exc, ig.ClientError):
        code = getattr(exc, "code", None)
        if isinstance(code, int) and code >= 500:
            return TransientPublishError(f"Instagram HTTP {code}", maybe_posted=during_configure)
        return ContentRejectedError(f"Instagram {name}: {said}", platform_message=said)
    return exc


#: what a person does when a login stops at a step only they can take. instagrapi's own text
#: for these speaks to a developer (handlers to configure, raw Bloks responses to inspect)
_LOGIN_STEPS: tuple[tuple[type[Exception], str], ...] = (
    (
        ig.TwoFactorRequired,
        "Instagram wants a two-factor step this bot cannot finish (the code was refused, or it"
        " asks for another way, such as approving the login on another device). Log in once in"
        " the Instagram app, check the account's TOTP secret, then resume the account.",
    ),
    (
        ig.ChallengeError,
        "Instagram wants a security check (a challenge) before this login. Complete it in the"
        " Instagram app, then resume the account.",
    ),
)
#: for a login that instagrapi itself could not carry through (an answer it cannot read)
_LOGIN_BROKE = (
    "Instagram's login took a turn instagrapi cannot follow. Log in once in the Instagram app;"
    " if this comes back, instagrapi may need an update. Then resume the account."
)


def classify_login(exc: Exception) -> Exception:
    """The publishing error for a failed login: busy or unreachable is worth another try;
    anything else (a refused code, a challenge, a bad password, an instagrapi that broke on
    an answer it cannot read) needs a person, told in a sentence of what to do."""
    name = type(exc).__name__
    for kind, sentence in _LOGIN_STEPS:
        if isinstance(exc, kind):
            return AccountAttentionError(
                f"Instagram {name}: {sentence}", reason=f"{name}: {sentence}"
            )
    if isinstance(exc, requests.RequestException):
        # a transport error instagrapi passes on unwrapped (its curl transport's timeout)
        return TransientPublishError(f"Instagram {name}")
    if not isinstance(exc, ig.ClientError):
        return AccountAttentionError(
            f"Instagram {name}: {_LOGIN_BROKE}", reason=f"{name}: {_LOGIN_BROKE}"
        )
    error = classify(exc, during_configure=False)
    if isinstance(error, ContentRejectedError):
        said = scrub(_platform_text(exc))
        return AccountAttentionError(
            f"Instagram login refused ({name}): {said}", reason=f"login refused: {said}"
        )
    return error


class InstagramPublisher:
    """The Publisher for Instagram; one per process, one instagrapi Client per account."""

    platform = Platform.INSTAGRAM

    def __init__(
        self,
        credentials: Callable[[str], InstagramCredentials],
        session_file: Callable[[str], Path],
        *,
        request_delay: float = 1.0,
        configure_delay: float = 3.0,
        timeout: float = 300.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._limits = Limits(deadline=timeout, max_answer_bytes=max_answer_bytes)
        self._credentials = credentials
        self._session_file = session_file
        self._request_delay = request_delay
        self._configure_delay = configure_delay
        self._clients: dict[str, _Client] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ session
    def _lock(self, account: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(account, threading.Lock())

    def _client(self, account: str) -> _Client:
        """The logged-in client of `account`: from memory, else the session file (validated by
        one request), else a fresh login with password and TOTP code; saved either way."""
        client = self._clients.get(account)
        if client is not None:
            return client
        creds = self._credentials(account)
        client = _Client(self._limits, with_challenge_flow=False)
        client.challenge_code_handler = _refuse_interaction
        client.change_password_handler = _refuse_interaction
        session = self._session_file(account)
        if session.is_file():
            client.load_settings(session)
        else:
            log.info("instagram account %s has no saved session: logging in", account)
        client.request_timeout = self._request_delay  # after loading: the file holds one too
        if creds.proxy is not None:
            # the account's own proxy (NAME_PROXY), for both sessions; never logged: the URL
            # may carry a password
            client.set_proxy(creds.proxy.get_secret_value())
        code = ""
        if creds.totp_secret is not None:
            code = client.totp_generate_code(creds.totp_secret.get_secret_value())
        try:
            # The accounts/login/ flow (then accounts/two_factor_login/ with the TOTP code);
            # instagrapi itself moves on to the Bloks (CAA) flow when Instagram asks for it.
            # With a saved session it only checks it (accounts/current_user/).
            client.login_legacy(
                creds.username, creds.password.get_secret_value(), verification_code=code
            )
        except Exception as exc:  # noqa: BLE001  # instagrapi's Bloks steps can fail outside ClientError
            if not isinstance(exc, ig.ClientError | requests.RequestException):
                # the type only: the text of an unexpected error may quote a response
                log.warning("instagram account %s: login failed in instagrapi (%s)",
                            account, type(exc).__name__)  # fmt: skip
            raise classify_login(exc) from None
        self._keep(account, client, session)
        log.info("instagram account %s is logged in", account)
        self._clients[account] = client
        return client

    @classmethod
    def _keep(cls, account: str, client: _Client, path: Path) -> None:
        """Save the session; a folder that cannot be written (full, read-only) is a warning,
        since the login worked and a session not kept only costs a login next time."""
        try:
            cls._save(client, path)
        except OSError as exc:
            reason = disk_reason(exc) or type(exc).__name__
            log.warning("instagram account %s: cannot keep its session in %s (%s); the next "
                        "start logs in again", account, path.parent, reason)  # fmt: skip

    @staticmethod
    def _save(client: _Client, path: Path) -> None:
        """Write the session settings, readable by this user only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        client.dump_settings(partial)
        partial.replace(path)

    def forget(self, account: str) -> None:
        """Drop the in-memory client (after the account was paused, for example)."""
        self._clients.pop(account, None)

    # ------------------------------------------------------------------ posting
    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        return await asyncio.to_thread(self._post_sync, account, list(media), caption)

    def _post_sync(self, account: str, media: list[OutgoingMedia], caption: str) -> RemotePost:
        check_media(media, caption)
        with self._lock(account):
            client = self._client(account)
            client.last_endpoint = ""
            try:
                posted = self._upload(client, media, caption)
            except Exception as exc:
                during = client.last_endpoint.startswith("media/configure")
                error = classify(exc, during_configure=during)
                if isinstance(error, AccountAttentionError):
                    self.forget(account)
                if error is exc:
                    raise
                raise error from None
            self._keep(account, client, self._session_file(account))
        code = getattr(posted, "code", "")
        return RemotePost(str(posted.id), f"https://www.instagram.com/p/{code}/" if code else None)

    def _upload(self, client: _Client, media: list[OutgoingMedia], caption: str) -> Any:
        if len(media) > 1:
            return client.album_upload(
                [m.path for m in media], caption, configure_timeout=self._configure_delay
            )
        item = media[0]
        if item.kind is MediaKind.VIDEO:
            return client.clip_upload(
                item.path,
                caption,
                thumbnail=item.cover,
                configure_timeout=self._configure_delay,
            )
        return client.photo_upload(item.path, caption)

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        return await asyncio.to_thread(self._find_sync, account, caption, since)

    def _find_sync(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        with self._lock(account):
            client = self._client(account)
            try:
                medias = _recent_medias(client, amount=20)
            except (ig.ClientError, requests.RequestException) as exc:
                raise classify(exc, during_configure=False) from None
        wanted = " ".join(caption.split())
        earliest = since - timedelta(minutes=5)  # the phone's and Instagram's clocks differ
        for item in medias:
            taken = item.taken_at
            if " ".join(str(item.caption_text).split()) == wanted and taken >= earliest:
                return RemotePost(str(item.id), f"https://www.instagram.com/p/{item.code}/")
        return None

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        """The post's likes, comments and (a reel's) plays, from media/{pk}/info/."""
        return await asyncio.to_thread(self._metrics_sync, account, remote_id)

    def _metrics_sync(self, account: str, remote_id: str) -> PostMetrics:
        pk = remote_id.split("_", 1)[0]  # a media id is "<pk>_<user id>"
        with self._lock(account):
            client = self._client(account)
            try:
                media = client.media_info_v1(pk)
            except ig.MediaNotFound:
                raise ContentRejectedError(
                    "Instagram metrics: the post is gone (media not found)",
                    platform_message="the post is gone or hidden",
                ) from None
            except (ig.ClientError, requests.RequestException) as exc:
                error = classify(exc, during_configure=False)
                if isinstance(error, AccountAttentionError):
                    self.forget(account)
                raise error from None
            except (KeyError, IndexError, TypeError, ValueError):
                shape = "Instagram metrics: an answer of another shape"
                raise TransientPublishError(shape) from None
        views = media.play_count if media.play_count is not None else media.view_count
        return PostMetrics(
            likes=media.like_count,
            replies=media.comment_count,
            views=views if media.media_type == VIDEO_MEDIA_TYPE else None,
        )


def _recent_medias(client: _Client, *, amount: int) -> list[Any]:
    """The account's latest posts (feed/user/:id/), newest first. Unlike instagrapi's
    `user_medias_v1`, a failure raises instead of reading as "no posts", so a post that
    cannot be checked is never taken for one that is not online."""
    answer = client.private_request(
        f"feed/user/{client.user_id}/",
        params={"count": amount, "rank_token": client.rank_token, "ranked_content": "true"},
    )
    items = answer.get("items") if isinstance(answer, dict) else None
    return [extract_media_v1(item) for item in items or []]


def check_media(media: Sequence[OutgoingMedia], caption: str) -> None:
    """What this publisher can post: one photo, one reel, or an album of 2..10 photos."""

    def refuse(message: str) -> ContentRejectedError:
        return ContentRejectedError(f"Instagram: {message}", platform_message=message)

    if not media:
        raise refuse("Instagram needs at least one image or video")
    if len(caption) > CAPTION_LIMIT:
        raise refuse(f"the caption is {len(caption)} characters; Instagram takes {CAPTION_LIMIT}")
    if len(media) > 1 and any(m.kind is MediaKind.VIDEO for m in media):
        raise refuse("albums here take images only; post a video on its own")
    if len(media) > MAX_ALBUM:
        raise refuse(f"an album takes at most {MAX_ALBUM} images")
    if any(m.mime not in {"image/jpeg", "video/mp4"} for m in media):
        raise refuse("media must be fitted for Instagram first (JPEG or MP4)")
    for item in media:
        if not item.path.is_file():
            raise refuse(f"{item.path.name} is missing")
        if item.kind is MediaKind.VIDEO and (item.cover is None or not item.cover.is_file()):
            raise refuse("a reel needs its cover image")
