"""Meta's Graph API (Facebook Pages, Instagram Graph, Threads): bounded calls, classified errors.

One `GraphApi` is one access token against one root (graph.facebook.com or graph.threads.net),
over a `BoundedSession` (each call one deadline and a capped answer); it is synchronous, so the
publishers call it from a worker thread. Every refusal (`{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}`) becomes a kind of `pipeline.publish.errors` by its code, and a
container (Instagram, Threads) is polled for its `status_code` until FINISHED, within a deadline.
The token travels in the Authorization header, never in a URL. Imports requests and the
publishing helpers only.
"""

from __future__ import annotations

import json
import logging
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import requests
from pydantic import SecretStr
from urllib3.exceptions import NewConnectionError

from pipeline.errors import PublishError
from pipeline.ports import RemotePost
from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
    scrub,
)
from pipeline.publish.http import BoundedSession, Limits
from pipeline.publish.image_host import ImageHost

log = logging.getLogger(__name__)

GRAPH_URL = "https://graph.facebook.com"
THREADS_URL = "https://graph.threads.net"
#: the Graph API version every Facebook and Instagram call names (Threads has its own, v1.0)
GRAPH_VERSION = "v21.0"
THREADS_VERSION = "v1.0"
#: Graph answers are small JSON (a page of 25 posts with their messages is some 30 KB)
MAX_ANSWER_BYTES = 1024 * 1024

# The Graph API's error codes (developers.facebook.com/docs/graph-api/guides/error-handling)
#: the access token is invalid or expired (190, its subcodes 458..467), the session (102), an
#: API permission the token lacks (10, 200..299): a person must make a new token
_TOKEN_CODES = frozenset({102, 190, 10})
_PERMISSION_CODES = range(200, 300)
#: the account or page is blocked from posting for a while (368), or Instagram blocked the
#: action (subcode 2207051): a person looks before anything is posted again
_BLOCKED_CODES = frozenset({368})
_BLOCKED_SUBCODES = frozenset({2207051})
#: rate limits: application (4), user (17), page (32), a feature's own (613), business use
#: case (80001..80014), Instagram's publishing limit (9, subcode 2207042)
_RATE_CODES = frozenset({4, 9, 17, 32, 613, *range(80001, 80015)})
#: an unknown error (1) or a temporarily unavailable service (2): try again later
_TRANSIENT_CODES = frozenset({1, 2})
#: Instagram/Threads: "the media is not ready for publishing yet" (9007, subcode 2207027)
_NOT_READY_CODES = frozenset({9007})
_NOT_READY_SUBCODES = frozenset({2207027})


def _usage_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds until a rate limit lifts, from the Business Use Case usage header (minutes)."""
    raw = headers.get("X-Business-Use-Case-Usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    found = [float(m) for m in minutes if isinstance(m, int | float) and m > 0]
    return max(found) * 60 if found else None


def classify_response(
    response: requests.Response, *, service: str, step: str, is_post: bool
) -> Exception:
    """The publishing error for a refused Graph call, by its error code and subcode.

    An invalid or expired token and a missing permission pause the account; a temporary block
    (368) too; rate limits, unknown errors (1, 2) and 5xx are worth a later try; anything else
    (100 invalid parameter, a media Meta could not fetch or read) is a refusal of this post."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    subcode = error.get("error_subcode") if isinstance(error.get("error_subcode"), int) else None
    said = str(error.get("error_user_msg") or error.get("message") or f"HTTP {status}")
    message = scrub(said)
    numbers = f" (code {code}" + (f", subcode {subcode}" if subcode else "") + ")" if code else ""
    text = f"{service} {step}: HTTP {status}: {message}{numbers}"
    if code in _BLOCKED_CODES or subcode in _BLOCKED_SUBCODES:
        return AccountAttentionError(text, reason=f"{service} blocked posting: {message}")
    if code in _RATE_CODES or status == 429:
        return TransientPublishError(text, retry_after=_usage_wait(response.headers))
    if code in _TOKEN_CODES or (code is not None and code in _PERMISSION_CODES):
        return AccountAttentionError(
            text, reason=f"{service} refused the access token: {message}; make a new one"
        )
    if code in _NOT_READY_CODES or subcode in _NOT_READY_SUBCODES:
        return TransientPublishError(text)
    if code in _TRANSIENT_CODES or status >= 500:
        return TransientPublishError(text, maybe_posted=is_post)
    if status == 401:
        return AccountAttentionError(text, reason=f"{service} refused the access token (401)")
    return ContentRejectedError(text, platform_message=message)


def transport_error(
    exc: requests.RequestException, *, service: str, step: str, is_post: bool
) -> TransientPublishError:
    """A call that got no (whole) answer: timed out, cut off, too long, or never connected.
    Only a connection that was never made proves the post was not sent."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    never_sent = isinstance(exc, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
    return TransientPublishError(
        f"{service} {step}: {type(exc).__name__}", maybe_posted=is_post and not never_sent
    )


class GraphApi:
    """Calls of one access token against one Graph root; synchronous (call from a thread).

    `service` names the platform in messages ("Facebook", "Instagram", "Threads"); `root` is
    where every call goes (GRAPH_API_URL, THREADS_API_URL); `limits` bound each call."""

    def __init__(
        self,
        service: str,
        token: SecretStr,
        *,
        root: str = GRAPH_URL,
        version: str = GRAPH_VERSION,
        limits: Limits | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self._token = token
        self.base = f"{root.rstrip('/')}/{version}"
        self.limits = limits or Limits(deadline=60.0, max_answer_bytes=MAX_ANSWER_BYTES)
        self.session = BoundedSession(self.limits)
        self.sleep = sleep
        self.clock = clock

    def __enter__(self) -> GraphApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        step: str,
        is_post: bool = False,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> dict[str, Any]:
        """One call; its JSON object answer, or the classified error."""
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        session = self.session if limits is None else BoundedSession(limits)
        try:
            response = session.request(
                method,
                f"{self.base}/{path.lstrip('/')}",
                params=params,
                data=data,
                files=files,
                headers=headers,
            )
        except requests.RequestException as exc:
            raise transport_error(exc, service=self.service, step=step, is_post=is_post) from None
        finally:
            if session is not self.session:
                session.close()
        if not response.ok:
            raise classify_response(response, service=self.service, step=step, is_post=is_post)
        try:
            body = response.json()
        except ValueError:
            raise TransientPublishError(
                f"{self.service} {step}: the answer is not JSON", maybe_posted=is_post
            ) from None
        if not isinstance(body, dict):
            raise TransientPublishError(
                f"{self.service} {step}: an answer of another shape", maybe_posted=is_post
            )
        return body

    def wait_finished(
        self,
        container_id: str,
        *,
        timeout: float,
        interval: float = 5.0,
        step: str = "media",
        fields: str = "status_code,status",
    ) -> None:
        """Poll a media container (`GET /{id}?fields=status_code,status`; Threads names them
        `status,error_message`) until FINISHED, as Meta asks (at most once a second, no longer
        than five minutes); ERROR or EXPIRED is a refusal of the media; still IN_PROGRESS after
        `timeout` seconds is worth a later try."""
        until = self.clock() + timeout
        while True:
            answer = self.call(
                "GET", container_id, step=f"{step} status", params={"fields": fields}
            )
            status = str(answer.get("status_code") or answer.get("status") or "")
            if status in ("FINISHED", "PUBLISHED"):
                return
            if status in ("ERROR", "EXPIRED"):
                said = str(answer.get("error_message") or answer.get("status") or status)
                raise ContentRejectedError(
                    f"{self.service} {step} {container_id}: {status}: {scrub(said)}",
                    platform_message=f"{self.service} could not process the media: {said}",
                )
            left = until - self.clock()
            if left <= 0:
                raise TransientPublishError(
                    f"{self.service} {step} {container_id}: still {status or 'unknown'} after"
                    f" {timeout:g} s"
                )
            self.sleep(min(interval, left))


def page_of(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The objects of one page of a Graph list answer (`{"data": [...], "paging": ...}`)."""
    data = answer.get("data")
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def count_of(value: object) -> int | None:
    """A count as Graph gives it: a number, or an edge's `{"summary": {"total_count": n}}`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        summary = value.get("summary")
        if isinstance(summary, dict):
            return count_of(summary.get("total_count"))
        if "count" in value:
            return count_of(value.get("count"))
    return None


def insight_values(answer: Mapping[str, Any]) -> dict[str, int]:
    """`{metric name: value}` of an insights answer (`data[].name`, `values[0].value` or
    `total_value.value`)."""
    found: dict[str, int] = {}
    for item in page_of(answer):
        name = item.get("name")
        value: object = None
        values = item.get("values")
        if isinstance(values, list) and values and isinstance(values[0], dict):
            value = values[0].get("value")
        total = item.get("total_value")
        if value is None and isinstance(total, dict):
            value = total.get("value")
        if isinstance(name, str) and isinstance(value, int) and not isinstance(value, bool):
            found[name] = value
    return found


#: how far a platform's clock may be behind ours when a lost post is looked for
CLOCK_SLACK = timedelta(minutes=5)


def same_message(caption: str, message: str) -> bool:
    """Whether a post's text is this caption (Meta keeps the text as sent)."""
    return (
        unicodedata.normalize("NFC", caption).strip()
        == unicodedata.normalize("NFC", message).strip()
    )


def publish_container(api: GraphApi, path: str, creation: str, service: str) -> RemotePost:
    """Publish a finished media container (`POST path`: Instagram's `media_publish`,
    Threads' `threads_publish`): the post's id and, when the platform tells it, its address.
    An answer without an id may still be a post: transient, `maybe_posted`."""
    answer = api.call("POST", path, step="publish", is_post=True, data={"creation_id": creation})
    post_id = str(answer.get("id") or "")
    if not post_id:
        raise TransientPublishError(
            f"{service} publish: an answer without an id", maybe_posted=True
        )
    try:  # the address is a nicety: the post is made whatever this answers
        link = api.call("GET", post_id, step="permalink", params={"fields": "permalink"})
        permalink = link.get("permalink")
    except PublishError:
        permalink = None
    return RemotePost(post_id, str(permalink) if permalink else None)


def matching_post(
    answer: Mapping[str, Any], text_field: str, caption: str, since: datetime
) -> RemotePost | None:
    """The post of a media list (`id`, `timestamp`, `permalink` and the text in `text_field`)
    whose text is `caption`, made since `since` (less the clock slack); None when none is."""
    for item in page_of(answer):
        text = item.get(text_field)
        if not isinstance(text, str) or not same_message(caption, text):
            continue
        try:
            when = datetime.strptime(str(item.get("timestamp")), "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            continue
        if when.astimezone(UTC) >= since - CLOCK_SLACK and item.get("id"):
            link = item.get("permalink")
            return RemotePost(str(item["id"]), str(link) if link else None)
    return None


class _Token(Protocol):
    @property
    def access_token(self) -> SecretStr: ...


C = TypeVar("C", bound=_Token)


class HostedMediaPublisher(Generic[C]):
    """What the publishers whose media Meta fetches by URL share (Instagram through the Graph
    API, Threads): an account's credentials, the image host that gives each file its public
    URL (None: IMAGE_HOST is not set, and a post with media fails saying so), one `GraphApi`
    per call with the account's token, and the deadlines of a call and of a container's
    processing."""

    #: names the platform in messages; where its calls go unless told
    SERVICE: ClassVar[str]
    API_URL: ClassVar[str]
    VERSION: ClassVar[str]

    def __init__(
        self,
        credentials: Callable[[str], C],
        host: ImageHost | None,
        *,
        api_url: str | None = None,
        version: str | None = None,
        timeout: float = 60.0,
        processing_timeout: float = 300.0,
        poll_interval: float = 5.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._host = host
        self._api_url = api_url or self.API_URL
        self._version = version or self.VERSION
        self._limits = Limits(deadline=timeout, max_answer_bytes=max_answer_bytes)
        self._processing_timeout = processing_timeout
        self._poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock

    def _api(self, creds: C) -> GraphApi:
        return GraphApi(
            self.SERVICE,
            creds.access_token,
            root=self._api_url,
            version=self._version,
            limits=self._limits,
            sleep=self._sleep,
            clock=self._clock,
        )
