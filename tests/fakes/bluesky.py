"""A Bluesky PDS on 127.0.0.1 that speaks the XRPC calls atproto's client makes for a post.

com.atproto.server.createSession / refreshSession, com.atproto.repo.uploadBlob / createRecord
app.bsky.feed.getAuthorFeed and app.bsky.feed.getPosts (a post's counts), with the real answers'
shapes and errors
(`{"error": "AuthenticationRequired", "message": ...}`, 400 `InvalidRecord` / `ExpiredToken`,
`BlobTooLarge` / `InvalidMimeType`, 429 with `ratelimit-*` headers). It checks what a real PDS
checks of a post: 300 graphemes, at most 4 images of at most 1,000,000 bytes, or one
app.bsky.embed.video whose blob is an MP4 of at most 100,000,000 bytes with alt text of at most
1000 graphemes and a positive aspect ratio, facets within the text. Fault switches make it refuse
the password, rate-limit, lose the answer to a post it made, or fall silent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import regex
from aiohttp import web

from tests.fakes.serving import serve

DID = "did:plc:fox4fake4bluesky4test"
#: app.bsky.embed.video's blob: accept and maxSize as the PDS enforces them
VIDEO_ACCEPT = ("video/mp4",)
VIDEO_MAX_BYTES = 100_000_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(scope: str, subject: str, expires_in: int, serial: int) -> str:
    """An (unsigned) JWT with the claims atproto's client reads (`exp`)."""
    header = _b64(json.dumps({"typ": "at+jwt", "alg": "ES256K"}).encode())
    claims = {
        "scope": scope,
        "sub": subject,
        "iat": int(time.time()),
        "exp": int(time.time()) + expires_in,
        "jti": f"t{serial}",
    }
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(b'sig')}"


def cid_of(data: bytes) -> str:
    """A CIDv1 (raw, sha2-256) in base32, as a PDS names a blob."""
    raw = b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def error(
    status: int, name: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": name, "message": message}, status=status, headers=headers)


@dataclass
class Post:
    rkey: str
    record: dict[str, Any]
    #: what the post achieved: likeCount, repostCount, replyCount, quoteCount
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("likeCount", "repostCount", "replyCount", "quoteCount"), 0
        )
    )

    @property
    def uri(self) -> str:
        return f"at://{DID}/app.bsky.feed.post/{self.rkey}"


@dataclass
class FakeBluesky:
    handle: str = "fox.bsky.social"
    app_password: str = "abcd-efgh-ijkl-mnop"
    #: seconds an access token lives (the client refreshes 15 minutes before it ends)
    access_lifetime: int = 7200
    port: int = 0
    # fault switches
    refuse_password: bool = False
    #: the next N calls to these methods answer 429 (with ratelimit headers)
    rate_limited: dict[str, int] = field(default_factory=dict)
    #: the next createRecord makes the post, then drops the connection without an answer
    lose_post_answer: bool = False
    #: every call waits for `release` before answering (a silent server)
    silent: bool = False
    #: bytes of filler added to every feed answer (an answer far larger than any real one)
    feed_padding: int = 0
    #: the largest video blob a post may embed (a PDS may set it lower than the lexicon)
    video_max_bytes: int = VIDEO_MAX_BYTES
    #: what the fake saw
    calls: list[str] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)
    blobs: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    logins: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _access: set[str] = field(default_factory=set)
    _refresh: set[str] = field(default_factory=set)
    _serial: itertools.count[int] = field(default_factory=itertools.count)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeBluesky:
        app = web.Application(client_max_size=VIDEO_MAX_BYTES + 1024 * 1024)
        app.router.add_route("*", "/xrpc/{method}", self._dispatch)
        self._runner, self.port = await serve(app, self.port)
        return self

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def expire_sessions(self) -> None:
        """Revoke every token given out (as a password change or a server restart would)."""
        self._access.clear()
        self._refresh.clear()

    def _tokens(self) -> dict[str, Any]:
        serial = next(self._serial)
        access = jwt("com.atproto.access", DID, self.access_lifetime, serial)
        refresh = jwt("com.atproto.refresh", DID, 90 * 86400, serial)
        self._access.add(access)
        self._refresh.add(refresh)
        return {
            "did": DID,
            "handle": self.handle,
            "accessJwt": access,
            "refreshJwt": refresh,
            "active": True,
        }

    # ------------------------------------------------------------------ dispatch
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        self.calls.append(method)
        if self.silent:
            await self.release.wait()
        if self.rate_limited.get(method, 0) > 0:
            self.rate_limited[method] -= 1
            reset = str(int(time.time()) + 30)
            headers = {
                "ratelimit-limit": "5000",
                "ratelimit-remaining": "0",
                "ratelimit-reset": reset,
                "ratelimit-policy": "5000;w=3600",
            }
            return error(429, "RateLimitExceeded", "Rate Limit Exceeded", headers)
        handler = {
            "com.atproto.server.createSession": self._create_session,
            "com.atproto.server.refreshSession": self._refresh_session,
            "com.atproto.repo.uploadBlob": self._upload_blob,
            "com.atproto.repo.createRecord": self._create_record,
            "app.bsky.feed.getAuthorFeed": self._author_feed,
            "app.bsky.feed.getPosts": self._get_posts,
        }.get(method)
        if handler is None:
            return error(501, "MethodNotImplemented", f"Method Not Implemented: {method}")
        return await handler(request)

    def _bearer(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    def _authorized(self, request: web.Request) -> web.Response | None:
        token = self._bearer(request)
        if not token:
            return error(401, "AuthMissing", "Authentication Required")
        if token not in self._access:
            return error(400, "ExpiredToken", "Token has expired")
        return None

    # ------------------------------------------------------------------ methods
    async def _create_session(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (
            self.refuse_password
            or body.get("identifier") not in (self.handle, DID)
            or body.get("password") != self.app_password
        ):
            return error(401, "AuthenticationRequired", "Invalid identifier or password")
        self.logins += 1
        return web.json_response(self._tokens())

    async def _refresh_session(self, request: web.Request) -> web.Response:
        token = self._bearer(request)
        if token not in self._refresh:
            return error(400, "ExpiredToken", "Token has been revoked")
        self._refresh.discard(token)
        return web.json_response(self._tokens())

    async def _upload_blob(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused is not None:
            return refused
        data = await request.read()
        mime = request.headers.get("Content-Type", "application/octet-stream")
        cid = cid_of(data)
        self.blobs[cid] = (data, mime)
        blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(data)}
        return web.json_response({"blob": blob})

    def _invalid(self, record: dict[str, Any]) -> str | None:
        """Why a real PDS would refuse this app.bsky.feed.post record, or None."""
        text = record.get("text", "")
        if len(regex.findall(r"\X", text)) > 300 or len(text.encode()) > 3000:
            return "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes"
        size = len(text.encode())
        for facet in record.get("facets") or []:
            index = facet.get("index", {})
            if not 0 <= index.get("byteStart", -1) < index.get("byteEnd", -1) <= size:
                return "Invalid app.bsky.feed.post record: facet index out of range"
        embed = record.get("embed") or {}
        if embed.get("$type") == "app.bsky.embed.images":
            images = embed.get("images") or []
            if len(images) > 4:
                return "Invalid app.bsky.feed.post record: Record/embed/images must not have more than 4 elements"
            for image in images:
                cid = image.get("image", {}).get("ref", {}).get("$link")
                if cid not in self.blobs:
                    return "Could not find blob: " + str(cid)
                if len(self.blobs[cid][0]) > 1_000_000:
                    return "Invalid app.bsky.feed.post record: BlobTooLarge"
        if embed.get("$type") == "app.bsky.embed.video":
            return self._invalid_video(embed)
        return None

    def _invalid_video(self, embed: dict[str, Any]) -> str | None:
        """Why a real PDS would refuse this app.bsky.embed.video, or None (the blob's own
        checks answer as the PDS's blob store does: `BlobTooLarge`, `InvalidMimeType`)."""
        video = embed.get("video") or {}
        cid = (video.get("ref") or {}).get("$link")
        if cid not in self.blobs:
            return "Could not find blob: " + str(cid)
        data, mime = self.blobs[cid]
        if mime not in VIDEO_ACCEPT:
            return f"Wrong type of file. It is {mime} but it must match {', '.join(VIDEO_ACCEPT)}."
        if len(data) > self.video_max_bytes:
            return (
                f"This file is too large. It is {len(data)} bytes but the maximum size is "
                f"{self.video_max_bytes} bytes."
            )
        alt = embed.get("alt")
        if alt is not None and len(regex.findall(r"\X", alt)) > 1000:
            return "Invalid app.bsky.feed.post record: Record/embed/alt must not be longer than 1000 graphemes"
        ratio = embed.get("aspectRatio")
        if ratio is not None and not (
            isinstance(ratio.get("width"), int)
            and isinstance(ratio.get("height"), int)
            and ratio["width"] >= 1
            and ratio["height"] >= 1
        ):
            return "Invalid app.bsky.feed.post record: Record/embed/aspectRatio/width must be >= 1"
        return None

    async def _create_record(self, request: web.Request) -> web.StreamResponse:
        refused = self._authorized(request)
        if refused is not None:
            return refused
        body = await request.json()
        if body.get("repo") not in (DID, self.handle) or body.get("collection") != (
            "app.bsky.feed.post"
        ):
            return error(400, "InvalidRequest", "Input/repo must be the session's account")
        record = body.get("record") or {}
        problem = self._invalid(record)
        if problem is not None:
            name = "InvalidRecord"
            if problem.startswith("Wrong type of file"):
                name = "InvalidMimeType"
            elif problem.startswith("This file is too large"):
                name = "BlobTooLarge"
            return error(400, name, problem)
        post = Post(f"3l{next(self._serial):011d}", record)
        self.posts.append(post)
        if self.lose_post_answer:
            self.lose_post_answer = False
            assert request.transport is not None
            request.transport.close()  # made, and the answer lost on the way
            return web.Response(status=500)
        return web.json_response(
            {
                "uri": post.uri,
                "cid": cid_of(json.dumps(record).encode()),
                "validationStatus": "valid",
            }
        )

    async def _author_feed(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused is not None:
            return refused
        limit = int(request.query.get("limit", "50"))
        feed = [
            {
                "post": {
                    "uri": post.uri,
                    "cid": cid_of(post.uri.encode()),
                    "author": {"did": DID, "handle": self.handle},
                    "record": post.record,
                    "indexedAt": post.record.get("createdAt"),
                }
            }
            for post in reversed(self.posts)
        ][:limit]
        answer: dict[str, Any] = {"feed": feed}
        if self.feed_padding:
            answer["cursor"] = "x" * self.feed_padding
        return web.json_response(answer)

    def _view(self, post: Post) -> dict[str, Any]:
        """A post as app.bsky.feed.defs#postView, its counts included."""
        return {
            "uri": post.uri,
            "cid": cid_of(post.uri.encode()),
            "author": {"did": DID, "handle": self.handle},
            "record": post.record,
            "indexedAt": post.record.get("createdAt"),
            **post.counts,
        }

    async def _get_posts(self, request: web.Request) -> web.Response:
        """app.bsky.feed.getPosts: the views of the posts named in `uris` (at most 25); a post
        that is gone is left out of the answer, as the AppView does."""
        refused = self._authorized(request)
        if refused is not None:
            return refused
        uris = request.query.getall("uris", [])
        if not uris or len(uris) > 25:
            return error(400, "InvalidRequest", "Error: uris must have 1 to 25 items")
        by_uri = {post.uri: post for post in self.posts}
        return web.json_response({"posts": [self._view(by_uri[u]) for u in uris if u in by_uri]})
