"""Meta's Graph API on 127.0.0.1: the Facebook Page calls a publisher makes, with real errors.

POST /{version}/{page-id}/photos (multipart `source`, or `url`; `published=false` for an
unpublished photo), POST /{page-id}/feed (`message`, `attached_media[i]`), POST
/{page-id}/videos (`source`, `description`), GET /{page-id}/posts (`since`, `limit`,
`fields`), GET /{object-id}?fields=... (a post's reactions, comments and shares). The token
comes as `Authorization: Bearer` (or `access_token`); answers and errors have the real shapes
(`{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`). A photo URL is
fetched as Meta fetches it, and a URL it cannot reach fails like Meta's (code 324).

Fault switches: `refuse_token` (190, subcode 463: the token expired), `fail_next` (the next
call of a step answers a given error), `lose_answer` (the next post is made, then the connection
drops without an answer), `silent` (calls wait for `release`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.serving import serve

PAGE_ID = "1029384756"
PAGE_TOKEN = "EAAB-page-SECRET-token"
IG_USER_ID = "17841400000000001"
IG_TOKEN = "EAAB-ig-SECRET-token"
THREADS_USER_ID = "25000000000000001"
THREADS_TOKEN = "THAA-threads-SECRET-token"
VERSION = "v21.0"
#: the largest file the fake reads (a real photo is at most 10 MB; test videos are small)
MAX_UPLOAD = 32 * 1024 * 1024

_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_VIDEO_MAGIC = b"ftyp"


def graph_error(
    status: int,
    code: int,
    message: str,
    *,
    kind: str = "OAuthException",
    subcode: int | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "AbCdEfGhIjK"
    return web.json_response({"error": error}, status=status, headers=headers)


#: ready-made refusals, as Meta words them
EXPIRED_TOKEN = (
    400,
    190,
    "Error validating access token: Session has expired on Thursday, 01-Jan-26 00:00:00 PST.",
    463,
)
PAGE_RATE_LIMIT = (400, 32, "(#32) Page request limit reached", None)
BLOCKED = (
    400,
    368,
    "It looks like you were misusing this feature by going too fast. You've been temporarily"
    " blocked from using it.",
    1390008,
)
INVALID_PARAMETER = (400, 100, "(#100) Invalid parameter", None)
UNKNOWN = (500, 1, "An unknown error occurred", None)


@dataclass
class Photo:
    id: str
    data: bytes
    published: bool


@dataclass
class PagePost:
    id: str
    message: str
    created: datetime
    photos: list[str] = field(default_factory=list)
    video: str | None = None
    reactions: int = 0
    comments: int = 0
    shares: int = 0


@dataclass
class Container:
    """An Instagram or Threads media container: made, processed, then published once."""

    id: str
    owner: str
    media_type: str
    text: str
    data: bytes | None = None
    cover: bytes | None = None
    children: list[str] = field(default_factory=list)
    carousel_item: bool = False
    status: str = "FINISHED"
    polls_left: int = 0


@dataclass
class Published:
    """A published Instagram media or Threads post, with the counts its insights report."""

    id: str
    owner: str
    text: str
    created: datetime
    container: Container
    likes: int = 0
    comments: int = 0
    views: int = 0
    reposts: int = 0


@dataclass
class FakeGraph:
    page_id: str = PAGE_ID
    page_token: str = PAGE_TOKEN
    ig_user_id: str = IG_USER_ID
    ig_token: str = IG_TOKEN
    threads_user_id: str = THREADS_USER_ID
    threads_token: str = THREADS_TOKEN
    #: how many status polls a video container answers IN_PROGRESS before FINISHED
    video_polls: int = 2
    #: every new container ends in ERROR (Instagram could not process the media)
    container_error: bool = False
    port: int = 0
    # fault switches
    refuse_token: bool = False
    #: step ("photos", "feed", "videos", "posts", "object") -> refusals answered, in order
    fail_next: dict[str, list[tuple[int, int, str, int | None]]] = field(default_factory=dict)
    #: seconds until a rate limit lifts, in the Business Use Case header of a 32/4/17 refusal
    regain_minutes: int = 0
    #: the next post (photo, feed or video) is made, then the connection drops without answer
    lose_answer: bool = False
    silent: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    # what the fake saw and holds
    calls: list[str] = field(default_factory=list)
    photos: dict[str, Photo] = field(default_factory=dict)
    videos: dict[str, bytes] = field(default_factory=dict)
    posts: list[PagePost] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    containers: dict[str, Container] = field(default_factory=dict)
    #: bytes the resumable video upload asks for at a time
    video_chunk: int = 64 * 1024
    _sessions: dict[str, tuple[str, int, bytearray]] = field(default_factory=dict)
    published: list[Published] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100000001))
    _runner: web.AppRunner | None = None
    _client: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeGraph:
        app = web.Application(client_max_size=MAX_UPLOAD)
        app.router.add_route("*", "/{version}/{node}", self._node)
        app.router.add_route("*", "/{version}/{node}/{edge}", self._edge)
        self._runner, self.port = await serve(app, self.port)
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def close(self) -> None:
        self.release.set()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _new_id(self) -> str:
        return str(next(self._ids))

    # ------------------------------------------------------------------ common
    async def _fields(self, request: web.Request) -> dict[str, Any]:
        """The call's parameters: query, then a form or multipart body (files as bytes)."""
        fields: dict[str, Any] = dict(request.query)
        if request.method != "POST":
            return fields
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    fields[part.name] = bytes(await part.read())
                else:
                    fields[part.name] = await part.text()
        else:
            fields.update(await request.post())
        return fields

    def _refusal(
        self, request: web.Request, step: str, fields: dict[str, Any]
    ) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        token = auth.partition(" ")[2] if auth.startswith(("Bearer ", "OAuth ")) else ""
        token = token or str(fields.get("access_token", ""))
        if not token:
            return graph_error(
                400,
                2500,
                "An active access token must be used to query information about the current user.",
            )
        if self.refuse_token:
            return graph_error(400, *EXPIRED_TOKEN[1:3], subcode=EXPIRED_TOKEN[3])
        if token not in (self.page_token, self.ig_token, self.threads_token):
            return graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        queued = self.fail_next.get(step)
        if queued:
            status, code, message, subcode = queued.pop(0)
            headers = None
            if code in (4, 17, 32) and self.regain_minutes:
                usage = {self.page_id: [{"type": "pages", "call_count": 100,
                                         "estimated_time_to_regain_access": self.regain_minutes}]}  # fmt: skip
                headers = {"X-Business-Use-Case-Usage": json.dumps(usage)}
            return graph_error(status, code, message, subcode=subcode, headers=headers)
        return None

    async def _lost(self, request: web.Request) -> web.Response:
        """The post is made; the answer never arrives."""
        self.lose_answer = False
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=500)

    async def _fetch(self, url: str) -> bytes | None:
        """A media URL fetched as Meta fetches it; None when it cannot be read."""
        self.fetched.append(url)
        assert self._client is not None
        try:
            async with self._client.get(url) as response:
                if response.status != 200:
                    return None
                return await response.content.read(MAX_UPLOAD)
        except (aiohttp.ClientError, TimeoutError):
            return None

    # ------------------------------------------------------------------ routes
    async def _node(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        self.calls.append(f"{request.method} {node}")
        if self.silent:
            await self.release.wait()
        fields = await self._fields(request)
        refused = self._refusal(request, "object", fields)
        if refused is not None:
            return refused
        for post in self.posts:
            if node in (post.id, post.video):
                return web.json_response(self._post_fields(post, str(fields.get("fields", ""))))
        wanted = str(fields.get("fields", ""))
        if node in self.containers:
            return web.json_response(self._status(self.containers[node]))
        for item in self.published:
            if node == item.id:
                answer: dict[str, Any] = {"id": item.id}
                if "like_count" in wanted:
                    answer["like_count"] = item.likes
                if "comments_count" in wanted:
                    answer["comments_count"] = item.comments
                if "permalink" in wanted:
                    answer["permalink"] = self._permalink(item)
                return web.json_response(answer)
        return graph_error(
            400,
            100,
            f"Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded"
            " due to missing permissions, or does not support this operation.",
            kind="GraphMethodException",
            subcode=33,
        )

    async def _edge(self, request: web.Request) -> web.StreamResponse:
        node, edge = request.match_info["node"], request.match_info["edge"]
        self.calls.append(f"{request.method} {node}/{edge}")
        if self.silent:
            await self.release.wait()
        fields = await self._fields(request)
        refused = self._refusal(request, edge, fields)
        if refused is not None:
            return refused
        if edge == "insights" and any(node == item.id for item in self.published):
            return self._insights(node, str(fields.get("metric", "")))
        if node not in (self.page_id, self.ig_user_id, self.threads_user_id):
            return graph_error(
                400, 100, f"(#100) Object {node} does not exist or the token may not use it"
            )
        handler = {
            ("POST", "photos"): self._photos,
            ("POST", "feed"): self._feed,
            ("POST", "videos"): self._videos,
            ("GET", "posts"): self._list_posts,
            ("POST", "media"): self._ig_container,
            ("POST", "threads"): self._threads_container,
            ("POST", "media_publish"): self._publish,
            ("POST", "threads_publish"): self._publish,
            ("GET", "media"): self._list_published,
            ("GET", "threads"): self._list_published,
        }.get((request.method, edge))
        if handler is None:
            return graph_error(400, 100, f"(#100) Unknown path components: /{edge}")
        return await handler(request, fields)

    async def _photos(self, request: web.Request, fields: dict[str, Any]) -> web.StreamResponse:
        data = fields.get("source")
        if not isinstance(data, bytes) and fields.get("url"):
            data = await self._fetch(str(fields["url"]))
            if data is None:
                return graph_error(400, 324, "(#324) Missing or invalid image file")
        if not isinstance(data, bytes) or not data.startswith(_IMAGE_MAGIC):
            return graph_error(400, 324, "(#324) Requires upload file")
        published = str(fields.get("published", "true")).lower() != "false"
        photo = Photo(self._new_id(), data, published)
        self.photos[photo.id] = photo
        if not published:
            return web.json_response({"id": photo.id})
        post = PagePost(
            f"{self.page_id}_{self._new_id()}",
            str(fields.get("message", "")),
            datetime.now(UTC),
            photos=[photo.id],
        )
        self.posts.append(post)
        if self.lose_answer:
            return await self._lost(request)
        return web.json_response({"id": photo.id, "post_id": post.id})

    async def _feed(self, request: web.Request, fields: dict[str, Any]) -> web.StreamResponse:
        attached: list[str] = []
        for index in itertools.count():
            raw = fields.get(f"attached_media[{index}]")
            if raw is None:
                break
            try:
                fbid = str(json.loads(raw)["media_fbid"])
            except (ValueError, KeyError, TypeError):
                return graph_error(
                    400, 100, f"(#100) param attached_media[{index}] must be an object"
                )
            photo = self.photos.get(fbid)
            if photo is None or photo.published:
                return graph_error(
                    400, 100, f"(#100) param attached_media[{index}] must be a valid media_fbid"
                )
            attached.append(fbid)
        message = str(fields.get("message", ""))
        if not message and not attached:
            return graph_error(400, 100, "(#100) Tried accessing nonexisting field (message)")
        for fbid in attached:
            self.photos[fbid].published = True
        post = PagePost(
            f"{self.page_id}_{self._new_id()}", message, datetime.now(UTC), photos=attached
        )
        self.posts.append(post)
        if self.lose_answer:
            return await self._lost(request)
        return web.json_response({"id": post.id})

    async def _videos(self, request: web.Request, fields: dict[str, Any]) -> web.StreamResponse:
        phase = fields.get("upload_phase")
        if phase is not None:
            return await self._resumable(request, str(phase), fields)
        data = fields.get("source")
        if not isinstance(data, bytes) and fields.get("file_url"):
            data = await self._fetch(str(fields["file_url"]))
        if not isinstance(data, bytes) or data[4:8] != _VIDEO_MAGIC:
            return graph_error(
                400,
                352,
                "(#352) Sorry, the video file you selected is in a format that we don't support.",
            )
        video_id = self._new_id()
        self.videos[video_id] = data
        self.posts.append(
            PagePost(
                f"{self.page_id}_{self._new_id()}",
                str(fields.get("description", "")),
                datetime.now(UTC),
                video=video_id,
            )
        )
        if self.lose_answer:
            return await self._lost(request)
        return web.json_response({"id": video_id})

    async def _resumable(
        self, request: web.Request, phase: str, fields: dict[str, Any]
    ) -> web.StreamResponse:
        """The resumable upload: start (file_size), transfer (chunks at the offsets this
        answers, `video_chunk` bytes each), finish (the description; the video is posted)."""
        if phase == "start":
            size = int(fields.get("file_size", "0") or 0)
            if size <= 0:
                return graph_error(400, 100, "(#100) file_size must be a positive integer")
            session = self._new_id()
            video_id = self._new_id()
            self._sessions[session] = (video_id, size, bytearray())
            return web.json_response({"video_id": video_id, "upload_session_id": session,
                                      "start_offset": "0",
                                      "end_offset": str(min(size, self.video_chunk))})  # fmt: skip
        session = str(fields.get("upload_session_id", ""))
        if session not in self._sessions:
            return graph_error(400, 6000, "There was a problem uploading your video file.", subcode=1363019)  # fmt: skip
        video_id, size, data = self._sessions[session]
        if phase == "transfer":
            chunk = fields.get("video_file_chunk")
            if not isinstance(chunk, bytes) or int(fields.get("start_offset", -1)) != len(data):
                return graph_error(400, 6001, "There was a problem uploading your video.", subcode=1363037)  # fmt: skip
            data += chunk
            end = min(size, len(data) + self.video_chunk)
            return web.json_response({"start_offset": str(len(data)), "end_offset": str(end)})
        if phase != "finish" or len(data) != size or bytes(data[4:8]) != _VIDEO_MAGIC:
            return graph_error(400, 352, "(#352) Sorry, the video file you selected is in a format that we don't support.")  # fmt: skip
        del self._sessions[session]
        self.videos[video_id] = bytes(data)
        self.posts.append(PagePost(f"{self.page_id}_{self._new_id()}",
                                   str(fields.get("description", "")), datetime.now(UTC),
                                   video=video_id))  # fmt: skip
        if self.lose_answer:
            return await self._lost(request)
        return web.json_response({"success": True})

    async def _list_posts(self, request: web.Request, fields: dict[str, Any]) -> web.Response:
        since = int(fields.get("since", "0") or 0)
        limit = min(int(fields.get("limit", "25") or 25), 100)
        wanted = str(fields.get("fields", "id")).split(",")
        newest = [p for p in reversed(self.posts) if p.created.timestamp() >= since][:limit]
        data = [self._post_fields(post, ",".join(wanted)) for post in newest]
        return web.json_response(
            {"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}}
        )

    def _post_fields(self, post: PagePost, wanted: str) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": post.id}
        if "message" in wanted and post.message:
            answer["message"] = post.message
        if "created_time" in wanted:
            answer["created_time"] = post.created.strftime("%Y-%m-%dT%H:%M:%S+0000")
        if "permalink_url" in wanted:
            answer["permalink_url"] = f"https://www.facebook.com/{post.id.replace('_', '/posts/')}"
        if "reactions" in wanted:
            answer["reactions"] = {"data": [], "summary": {"total_count": post.reactions,
                                                          "viewer_reaction": "NONE"}}  # fmt: skip
        if "comments" in wanted:
            answer["comments"] = {"data": [], "summary": {"order": "ranked",
                                                         "total_count": post.comments,
                                                         "can_comment": True}}  # fmt: skip
        if "shares" in wanted and post.shares:
            answer["shares"] = {"count": post.shares}  # absent until the first share, as Meta
        return answer

    # ------------------------------------------------------------------ Instagram and Threads
    def _status(self, container: Container) -> dict[str, Any]:
        if container.status == "IN_PROGRESS":
            if container.polls_left > 0:
                container.polls_left -= 1
            else:
                container.status = "ERROR" if self.container_error else "FINISHED"
        if container.owner == self.threads_user_id:  # Threads names the fields its own way
            answer: dict[str, Any] = {"id": container.id, "status": container.status}
            if container.status == "ERROR":
                answer["error_message"] = "FAILED_PROCESSING_IMAGE"
            return answer
        answer = {"id": container.id, "status_code": container.status}
        if container.status == "ERROR":
            answer["status"] = "Error: Media upload has failed with error code 2207026"
        return answer

    def _new_container(self, owner: str, media_type: str, text: str, **extra: Any) -> Container:
        container = Container(self._new_id(), owner, media_type, text, **extra)
        if self.container_error and container.status == "FINISHED":
            container.status = "ERROR"
        self.containers[container.id] = container
        return container

    async def _fetch_media(self, url: object, *, video: bool) -> bytes | web.Response:
        data = await self._fetch(str(url)) if url else None
        if data is None:
            return graph_error(
                400,
                9004,
                "Media download has failed. The media URI doesn't meet our requirements.",
                subcode=2207052,
            )
        if video and data[4:8] != _VIDEO_MAGIC:
            return graph_error(400, 352, "The video file you selected is in a format that we don't support.", subcode=2207026)  # fmt: skip
        if not video and not data.startswith(b"\xff\xd8\xff"):
            return graph_error(400, 36001, "Only JPEG format is supported.", subcode=2207083)
        return data

    def _children(self, owner: str, raw: str) -> list[str] | web.Response:
        ids = [c for c in raw.split(",") if c]
        if not 2 <= len(ids) <= 10:
            return graph_error(400, 100, "(#100) The carousel must have between 2 and 10 children")
        for child in ids:
            found = self.containers.get(child)
            if found is None or found.owner != owner or not found.carousel_item:
                return graph_error(
                    400, 100, f"(#100) Param children[{child}] is not a valid carousel item"
                )
        return ids

    async def _ig_container(self, request: web.Request, fields: dict[str, Any]) -> web.Response:
        owner = request.match_info["node"]
        caption = str(fields.get("caption", ""))
        if len(caption) > 2200:
            return graph_error(400, 100, "(#100) The caption is too long", subcode=2207010)
        kind = str(fields.get("media_type", "IMAGE"))
        if kind == "CAROUSEL":
            children = self._children(owner, str(fields.get("children", "")))
            if isinstance(children, web.Response):
                return children
            made = self._new_container(owner, kind, caption, children=children)
        elif kind in ("REELS", "VIDEO"):
            data = await self._fetch_media(fields.get("video_url"), video=True)
            if isinstance(data, web.Response):
                return data
            cover = None
            if fields.get("cover_url"):
                cover = await self._fetch_media(fields["cover_url"], video=False)
                if isinstance(cover, web.Response):
                    return cover
            made = self._new_container(owner, "REELS", caption, data=data, cover=cover,
                                       status="IN_PROGRESS", polls_left=self.video_polls)  # fmt: skip
        else:
            data = await self._fetch_media(fields.get("image_url"), video=False)
            if isinstance(data, web.Response):
                return data
            item = str(fields.get("is_carousel_item", "")).lower() == "true"
            made = self._new_container(owner, "IMAGE", caption, data=data, carousel_item=item)
        return web.json_response({"id": made.id})

    async def _threads_container(
        self, request: web.Request, fields: dict[str, Any]
    ) -> web.Response:
        owner = request.match_info["node"]
        text = str(fields.get("text", ""))
        if len(text) > 500:
            return graph_error(400, 100, "Param text must be at most 500 characters long.",
                               kind="THApiException", subcode=4279009)  # fmt: skip
        kind = str(fields.get("media_type", "TEXT"))
        item = str(fields.get("is_carousel_item", "")).lower() == "true"
        if kind == "TEXT":
            made = self._new_container(owner, kind, text)
        elif kind == "IMAGE":
            data = await self._fetch_media(fields.get("image_url"), video=False)
            if isinstance(data, web.Response):
                return data
            made = self._new_container(owner, kind, text, data=data, carousel_item=item)
        elif kind == "CAROUSEL":
            children = self._children(owner, str(fields.get("children", "")))
            if isinstance(children, web.Response):
                return children
            made = self._new_container(owner, kind, text, children=children)
        else:
            return graph_error(
                400, 100, "(#100) Param media_type must be one of TEXT, IMAGE, VIDEO, CAROUSEL"
            )
        return web.json_response({"id": made.id})

    async def _publish(self, request: web.Request, fields: dict[str, Any]) -> web.StreamResponse:
        owner = request.match_info["node"]
        container = self.containers.get(str(fields.get("creation_id", "")))
        if container is None or container.owner != owner or container.carousel_item:
            return graph_error(400, 100, "(#100) Param creation_id must be a valid container id")
        if container.status == "PUBLISHED":
            return graph_error(400, 100, "(#100) The media has already been published")
        if container.status != "FINISHED":
            return graph_error(400, 9007, "Media ID is not available", subcode=2207027)
        container.status = "PUBLISHED"
        item = Published(self._new_id(), owner, container.text, datetime.now(UTC), container)
        self.published.append(item)
        if self.lose_answer:
            return await self._lost(request)
        return web.json_response({"id": item.id})

    def _permalink(self, item: Published) -> str:
        if item.owner == self.threads_user_id:
            return f"https://www.threads.net/@fox/post/T{item.id}"
        return f"https://www.instagram.com/p/C{item.id}/"

    async def _list_published(self, request: web.Request, fields: dict[str, Any]) -> web.Response:
        owner = request.match_info["node"]
        limit = min(int(fields.get("limit", "25") or 25), 100)
        text_key = "text" if owner == self.threads_user_id else "caption"
        mine = [p for p in reversed(self.published) if p.owner == owner][:limit]
        data = [
            {
                "id": p.id,
                text_key: p.text,
                "timestamp": p.created.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                "permalink": self._permalink(p),
            }
            for p in mine
        ]
        return web.json_response(
            {"data": data, "paging": {"cursors": {"before": "b", "after": "a"}}}
        )

    def _insights(self, media_id: str, metrics: str) -> web.Response:
        item = next(p for p in self.published if p.id == media_id)
        values = {"views": item.views, "likes": item.likes, "replies": item.comments,
                  "reposts": item.reposts, "quotes": 0}  # fmt: skip
        data = []
        for name in [m for m in metrics.split(",") if m]:
            if name not in values:
                return graph_error(
                    400,
                    100,
                    f"(#100) metric[0] must be one of the following values: {', '.join(values)}",
                )
            data.append({"name": name, "period": "lifetime", "values": [{"value": values[name]}],
                         "title": name.title(), "id": f"{media_id}/insights/{name}/lifetime"})  # fmt: skip
        return web.json_response({"data": data})
