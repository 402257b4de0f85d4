"""X's HTTP API as `responses` callbacks: media upload v2, tweets, me and the user timeline.

Answers as the real endpoints do (shapes from docs.x.com) and keeps every request, so tests
can assert endpoints, parameters, chunk sizes, bytes and captions.
"""

from __future__ import annotations

import html
import json
import re
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import requests
import responses
import twitter_text

ROOT = "https://api.x.com"
UPLOAD = ROOT + "/2/media/upload"
TWEETS = "https://api.x.com/2/tweets"

Reply = tuple[int, dict[str, str], str]

#: X's answer to a call the app's access level does not include, as the Free tier gets it for
#: the user timeline: HTTP 403, error code 453, a `client-forbidden` problem naming the level
ACCESS_453_DETAIL = (
    "You currently have access to a subset of X API V2 endpoints and limited v1.1 endpoints"
    " (e.g. media post, oauth) only. If you need access to this endpoint, you may need a"
    " different access level. You can learn more here:"
    " https://developer.x.com/en/portal/product"
)
ACCESS_453: Reply = (
    403,
    {},
    json.dumps(
        {
            "title": "Forbidden",
            "detail": ACCESS_453_DETAIL,
            "type": "https://api.twitter.com/2/problems/client-forbidden",
            "reason": "client-not-enrolled",
            "required_enrollment": "Basic",
            "client_id": "29000001",
            "status": 403,
            "errors": [{"message": ACCESS_453_DETAIL, "code": 453}],
        }
    ),
)


#: a new post's public_metrics, as X gives them (GET /2/tweets/:id?tweet.fields=public_metrics)
NO_METRICS = {
    "retweet_count": 0,
    "reply_count": 0,
    "like_count": 0,
    "quote_count": 0,
    "bookmark_count": 0,
    "impression_count": 0,
}


def body_of(request: requests.PreparedRequest) -> bytes:
    body = request.body
    if isinstance(body, bytes):
        return body
    return body.encode() if isinstance(body, str) else b""


def json_of(request: requests.PreparedRequest) -> Any:
    return json.loads(body_of(request) or b"{}")


def multipart(request: requests.PreparedRequest) -> dict[str, bytes]:
    """The fields of a multipart/form-data body."""
    body = body_of(request)
    content_type = request.headers["Content-Type"]
    if isinstance(content_type, bytes):
        content_type = content_type.decode()
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = payload if isinstance(payload, bytes) else b""
    return fields


def shown_by_x(text: str, *, media: bool) -> str:
    """A post's text as X's API gives it back: every link, a bare domain included, replaced
    by a t.co link, `&<>` escaped, and a t.co link to the media appended."""
    pieces, at = [], 0
    for number, found in enumerate(twitter_text.extract_urls_with_indices(text)):
        start, end = found["indices"]
        pieces += [html.escape(text[at:start], quote=False), f"https://t.co/L{number}nk"]
        at = end
    pieces.append(html.escape(text[at:], quote=False))
    return "".join(pieces) + (" https://t.co/MeD1a" if media else "")


@dataclass
class FakeX:
    """The state of a fake X account: uploads, tweets, and faults to answer with first."""

    next_media: int = 100
    next_tweet: int = 1790000000000000001
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    tweets: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: (method and path prefix) -> replies to give before the normal answer
    faults: dict[str, deque[Reply]] = field(default_factory=dict)
    processing_polls: int = 1
    #: the app is on X's Free tier: posting works, reading the timeline answers 453
    free_tier: bool = False

    def fail(self, key: str, *replies: Reply) -> None:
        self.faults.setdefault(key, deque()).extend(replies)

    def _fault(self, key: str) -> Reply | None:
        queue = self.faults.get(key)
        return queue.popleft() if queue else None

    #: (method, path pattern, handler name): the endpoints this fake answers
    ROUTES: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("POST", r"/2/media/upload/initialize", "_initialize"),
        ("POST", r"/2/media/upload/\d+/append", "_append"),
        ("POST", r"/2/media/upload/\d+/finalize", "_finalize"),
        ("GET", r"/2/media/upload", "_status"),
        ("POST", r"/2/media/metadata", "_metadata"),
        ("POST", r"/2/tweets", "_tweet"),
        ("GET", r"/2/tweets/\d+", "_lookup"),
        ("GET", r"/2/users/me", "_me"),
        ("GET", r"/2/users/42/tweets", "_timeline"),
    )

    def install(self, mock: responses.RequestsMock) -> None:
        """Answer through `responses`, in this process, at X_API_URL's default root (where
        every X call goes, tweepy's included)."""
        for method, path, handler in self.ROUTES:
            mock.add_callback(
                method, re.compile(ROOT + path + r"(\?.*)?$"), callback=getattr(self, handler)
            )

    def answer(self, request: requests.PreparedRequest) -> Reply:
        """One request, routed by method and path as X does (for the HTTP server in fakes/)."""
        path = urlsplit(str(request.url)).path
        for method, pattern, handler in self.ROUTES:
            if request.method == method and re.fullmatch(pattern, path):
                reply: Reply = getattr(self, handler)(request)
                return reply
        problem = {"title": "Not Found Error", "detail": f"no route {request.method} {path}"}
        return 404, {}, json.dumps({"errors": [problem], **problem})

    def _record(self, request: requests.PreparedRequest) -> str:
        path = urlsplit(str(request.url)).path
        self.calls.append((str(request.method), path))
        auth = request.headers.get("Authorization", "")
        assert isinstance(auth, str)
        assert auth.startswith("OAuth "), "every X call is signed with OAuth 1.0a"
        assert 'oauth_consumer_key="ck-public"' in auth
        assert 'oauth_token="42-at-token"' in auth
        return path

    def _initialize(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        if fault := self._fault("initialize"):
            return fault
        body = json_of(request)
        media_id = str(self.next_media)
        self.next_media += 1
        self.uploads[media_id] = {"init": body, "chunks": [], "finalized": False, "alt": None}
        data = {"id": media_id, "media_key": f"3_{media_id}", "expires_after_secs": 86400}
        return 200, {}, json.dumps({"data": data})

    def _append(self, request: requests.PreparedRequest) -> Reply:
        path = self._record(request)
        media_id = path.split("/")[-2]
        fields = multipart(request)
        upload = self.uploads[media_id]
        assert int(fields["segment_index"]) == len(upload["chunks"])
        upload["chunks"].append(fields["media"])
        return 200, {}, json.dumps({"data": {"expires_at": 1893456000}})

    def _finalize(self, request: requests.PreparedRequest) -> Reply:
        path = self._record(request)
        media_id = path.split("/")[-2]
        upload = self.uploads[media_id]
        upload["finalized"] = True
        size = sum(len(chunk) for chunk in upload["chunks"])
        assert size == upload["init"]["total_bytes"]
        data: dict[str, Any] = {"id": media_id, "media_key": f"3_{media_id}", "size": size}
        if upload["init"]["media_category"] in {"tweet_video", "tweet_gif"}:
            upload["polls"] = self.processing_polls
            data["processing_info"] = {"state": "pending", "check_after_secs": 1}
        return 200, {}, json.dumps({"data": data})

    def _status(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        query = parse_qs(urlsplit(str(request.url)).query)
        assert query["command"] == ["STATUS"]
        upload = self.uploads[query["media_id"][0]]
        upload["polls"] -= 1
        state = "succeeded" if upload["polls"] <= 0 else "in_progress"
        info = {"state": state, "check_after_secs": 1, "progress_percent": 100}
        return 200, {}, json.dumps({"data": {"id": query["media_id"][0], "processing_info": info}})

    def _metadata(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        body = json_of(request)
        self.uploads[body["id"]]["alt"] = body["metadata"]["alt_text"]["text"]
        return 200, {}, json.dumps({"data": {"id": body["id"], "associated_metadata": {}}})

    def _tweet(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        if fault := self._fault("tweet"):
            return fault
        body = json_of(request)
        for media_id in body.get("media", {}).get("media_ids", []):
            assert self.uploads[media_id]["finalized"], "media must be finalized before posting"
        tweet = {
            "id": str(self.next_tweet),
            "text": body["text"],
            "media": body.get("media"),
            "public_metrics": dict(NO_METRICS),
        }
        self.next_tweet += 1
        self.tweets.append(tweet)
        data = {"id": tweet["id"], "text": tweet["text"], "edit_history_tweet_ids": [tweet["id"]]}
        return 201, {}, json.dumps({"data": data})

    def _me(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        if fault := self._fault("me"):
            return fault
        return 200, {}, json.dumps({"data": {"id": "42", "name": "Fox", "username": "fox"}})

    def _timeline(self, request: requests.PreparedRequest) -> Reply:
        self._record(request)
        if fault := self._fault("timeline"):
            return fault
        if self.free_tier:
            return ACCESS_453
        data = [
            {
                "id": t["id"],
                "text": shown_by_x(t["text"], media=bool(t.get("media"))),
                "created_at": "2025-01-01T00:00:00.000Z",
            }
            for t in reversed(self.tweets)
        ]
        meta = {"result_count": len(data)}
        return 200, {}, json.dumps({"data": data, "meta": meta} if data else {"meta": meta})

    def _lookup(self, request: requests.PreparedRequest) -> Reply:
        """GET /2/tweets/:id: the default fields, public_metrics when asked; a post that is not
        there answers 200 with a `Not Found Error`, as X does."""
        path = self._record(request)
        if fault := self._fault("lookup"):
            return fault
        tweet_id = path.rsplit("/", 1)[-1]
        query = parse_qs(urlsplit(str(request.url)).query)
        fields = ",".join(query.get("tweet.fields", [])).split(",")
        for tweet in self.tweets:
            if tweet["id"] == tweet_id:
                data = {
                    "id": tweet_id,
                    "text": shown_by_x(tweet["text"], media=bool(tweet.get("media"))),
                    "edit_history_tweet_ids": [tweet_id],
                }
                if "public_metrics" in fields:
                    data["public_metrics"] = tweet["public_metrics"]
                return 200, {}, json.dumps({"data": data})
        problem = {
            "value": tweet_id,
            "detail": f"Could not find tweet with id: [{tweet_id}].",
            "title": "Not Found Error",
            "resource_type": "tweet",
            "parameter": "id",
            "resource_id": tweet_id,
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }
        return 200, {}, json.dumps({"errors": [problem]})
