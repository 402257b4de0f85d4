"""A fake Discord for tests: REST routes and the gateway on 127.0.0.1, recording what the bot sent.

Speaks what discord.py needs (discord/http.py routes, discord/gateway.py opcodes): login,
`/gateway/bot`, HELLO / IDENTIFY / HEARTBEAT / READY / GUILD_CREATE / RESUME, command sync,
interaction callbacks and webhooks, messages with attachments, edits and reactions. Enforces
Discord's limits (10 files, 2,000 characters, the upload size, 3 s to answer an interaction).
Test-side helpers inject interactions and reactions. Imports aiohttp and the standard library.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes.serving import serve
from tests.waiting import until

JSON = dict[str, Any]

GUILD_ID = 900000000000000001
APP_ID = 900000000000000002
BOT_ID = APP_ID  # a bot user's id is its application's id
REVIEW_CHANNEL = 910000000000000001
NOTIFY_CHANNEL = 910000000000000002
GENERAL_CHANNEL = 910000000000000003
#: a direct-message channel between a user and the bot (no guild)
DM_CHANNEL = 910000000000000009
GENERATE_ROLE = 920000000000000001
REVIEW_ROLE = 920000000000000002
ADMIN_ROLE = 920000000000000003
WEBHOOK_ID = 930000000000000001
WEBHOOK_TOKEN = "fake-webhook-token"
BOT_TOKEN = "fake-token"

#: interactions must be answered within 3 s; webhooks of an interaction live 15 minutes
ANSWER_WITHIN = 3.0
CONTENT_LIMIT = 2000
FILES_LIMIT = 10
#: a guild's sticker slots by premium tier, and a sticker file's limit (Discord's docs,
#: resources/sticker#create-guild-sticker: PNG, APNG, GIF or Lottie JSON, at most 512 KB)
STICKER_SLOTS = {0: 5, 1: 15, 2: 30, 3: 60}
STICKER_BYTES = 512 * 1024
EPHEMERAL = 1 << 6


@dataclass(frozen=True)
class FakeUser:
    id: int
    name: str
    roles: tuple[int, ...] = ()
    bot: bool = False

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.name.title(),
            "avatar": None,
            "bot": self.bot,
            "flags": 0,
            "public_flags": 0,
        }

    def member(self) -> JSON:
        return {
            "user": self.payload(),
            "roles": [str(role) for role in self.roles],
            "joined_at": "2025-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }


#: the bot carries the reviewer role too, so only its user id keeps its own reactions out
BOT = FakeUser(BOT_ID, "mediaoverload", roles=(REVIEW_ROLE,), bot=True)
ALICE = FakeUser(940000000000000001, "alice", roles=(GENERATE_ROLE, REVIEW_ROLE))
BOB = FakeUser(940000000000000002, "bob", roles=(GENERATE_ROLE,))
CAROL = FakeUser(940000000000000003, "carol", roles=(GENERATE_ROLE, ADMIN_ROLE))
MALLORY = FakeUser(940000000000000004, "mallory")
USERS = (BOT, ALICE, BOB, CAROL, MALLORY)


@dataclass
class FakeAttachment:
    id: int
    filename: str
    size: int
    content_type: str
    data: bytes
    #: where it is served (a member's upload: the fake's CDN route); else a made-up CDN URL
    url: str | None = None
    #: an image's pixels, as Discord reports them for images
    width: int | None = None
    height: int | None = None

    def payload(self) -> JSON:
        url = self.url or f"https://cdn.fake/attachments/{self.id}/{self.filename}"
        payload: JSON = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": url,
            "proxy_url": url,
            "content_type": self.content_type,
        }
        if self.width is not None and self.height is not None:
            payload |= {"width": self.width, "height": self.height}
        return payload


@dataclass
class FakeMessage:
    id: int
    channel_id: int
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    author: FakeUser = BOT
    flags: int = 0
    webhook_id: int | None = None
    #: emoji -> ids of the users who reacted, in order
    reactions: dict[str, list[int]] = field(default_factory=dict)
    edits: int = 0
    history: list[str] = field(default_factory=list)
    reference_id: int | None = None
    #: the `allowed_mentions` sent with each version in `history` (None: not sent)
    allowed_mentions: list[JSON | None] = field(default_factory=list)
    #: who Discord notified when the message was created: "everyone", "user:ID", "role:ID"
    pinged: set[str] = field(default_factory=set)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    def custom_ids(self) -> list[str]:
        found: list[str] = []

        def walk(items: Iterable[JSON]) -> None:
            for item in items:
                if "custom_id" in item:
                    found.append(item["custom_id"])
                walk(item.get("components", []))

        walk(self.components)
        return found

    def payload(self) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "guild_id": str(GUILD_ID),
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "type": 0,
            "flags": self.flags,
            "reactions": [
                {
                    "emoji": {"id": None, "name": emoji},
                    "count": len(users),
                    "count_details": {"normal": len(users), "burst": 0},
                    "me": BOT_ID in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, users in self.reactions.items()
                if users
            ],
        }
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(APP_ID)
        return data


@dataclass
class FakeInteraction:
    id: int
    token: str
    type: int
    user: FakeUser
    channel_id: int
    created: float
    data: JSON
    #: the callback the bot sent, once it did
    response: JSON | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    original: FakeMessage | None = None
    followups: list[FakeMessage] = field(default_factory=list)
    #: deferred (type 5) and the "thinking" message not yet replaced
    loading: bool = False

    @property
    def reply(self) -> FakeMessage | None:
        """The message that answers the command: the original response once it has text (a
        deferred one gets it from an edit or from the first follow-up), else a follow-up."""
        if self.original is not None and not self.loading:
            return self.original
        return self.followups[0] if self.followups else None

    @property
    def choices(self) -> list[JSON]:
        """The autocomplete answer."""
        assert self.response is not None
        assert self.response["type"] == 8
        choices: list[JSON] = self.response["data"]["choices"]
        return choices

    @property
    def modal(self) -> JSON:
        assert self.response is not None
        assert self.response["type"] == 9
        modal: JSON = self.response["data"]
        return modal

    def texts(self) -> list[str]:
        """Every text the bot showed for this interaction: the reply's versions, follow-ups."""
        texts = list(self.original.history) if self.original else []
        return texts + [m.content for m in self.followups]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: Any
    files: tuple[tuple[str, int], ...] = ()


class DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(data: Any, *, status: int = 200) -> web.Response:
    """JSON as Discord sends it: discord.py parses a body only when the content type is exactly
    `application/json` (aiohttp's json_response adds a charset)."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def pings(content: str, allowed: JSON | None) -> set[str]:
    """Whom a new message notifies, by Discord's rules: without `allowed_mentions` every
    @everyone / @here, user and role mention in the content pings; with it, only the kinds in
    `parse` and the ids listed in `users` / `roles` (discord.com/developers/docs/resources/
    message#allowed-mentions-object)."""
    found: set[str] = set()
    if "@everyone" in content or "@here" in content:
        found.add("everyone")
    found |= {f"user:{uid}" for uid in _USER_MENTION.findall(content)}
    found |= {f"role:{rid}" for rid in _ROLE_MENTION.findall(content)}
    if allowed is None:
        return found
    parse = set(allowed.get("parse") or [])
    users = {f"user:{uid}" for uid in allowed.get("users") or []}
    roles = {f"role:{rid}" for rid in allowed.get("roles") or []}
    return {
        target
        for target in found
        if (target == "everyone" and "everyone" in parse)
        or (target.startswith("user:") and ("users" in parse or target in users))
        or (target.startswith("role:") and ("roles" in parse or target in roles))
    }


#: Discord's epoch (2015-01-01 UTC) in Unix milliseconds
DISCORD_EPOCH_MS = 1_420_070_400_000


def _snowflakes() -> Iterator[int]:
    """Ids as Discord makes them: milliseconds since its epoch in the top bits, so a message's
    id tells when it was sent (`history(after=a_time)` depends on that), rising strictly."""
    last = 0
    while True:
        last = max(last + 1, (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22)
        yield last


class FakeDiscord:
    """The fake; `async with FakeDiscord() as fake:` then point DISCORD_API_BASE at
    `fake.api_base`."""

    def __init__(
        self,
        *,
        upload_limit: int = 10 * 1024 * 1024,
        token: str = BOT_TOKEN,
        webhook_token: str = WEBHOOK_TOKEN,
    ) -> None:
        self.upload_limit = upload_limit
        self.token = token
        self.webhook_token = webhook_token
        self.requests: list[Recorded] = []
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        #: files members attached to commands (`upload`), served on the fake CDN route
        self.uploads: dict[int, FakeAttachment] = {}
        #: test side: how many times each upload was downloaded
        self.downloads: dict[int, int] = {}
        self.commands: dict[int | None, list[JSON]] = {}
        self.command_syncs: list[int | None] = []
        self.identifies = 0
        self.resumes = 0
        self.refused: list[tuple[str, int, str]] = []
        #: messages deleted through DELETE /channels/{id}/messages/{id}
        self.deleted: list[FakeMessage] = []
        #: test side: how many more channel messages are created; later posts hang (as if the
        #: bot died mid-upload) until `posts_released` is set, then fail. None: no limit
        self.posts_left: int | None = None
        self.posts_released = asyncio.Event()
        self.posts_held = 0
        #: the guild's boost tier (its sticker slots) and its stickers, by id
        self.premium_tier = 0
        self.stickers: dict[int, JSON] = {}
        #: test side: every sticker upload that reached the fake (made or refused)
        self.sticker_uploads = 0
        #: test side: how many more sticker uploads are answered; the next one is made, then
        #: its answer is held (as if the process died waiting) until `stickers_released` is
        #: set, then the connection drops. None: no limit
        self.sticker_answers_left: int | None = None
        self.stickers_released = asyncio.Event()
        self.sticker_answers_held = 0
        #: test side: how many more logins (GET /users/@me) have their connection dropped
        #: unanswered, as a network outage does
        self.drop_logins = 0
        self.logins = 0
        self._ids = _snowflakes()
        self._seq = 0
        self._events: list[JSON] = []
        self._ws: web.WebSocketResponse | None = None
        self._session_id = ""
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.connected = asyncio.Event()

    # ------------------------------------------------------------------ life cycle
    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._errors], client_max_size=1024**3)
        api = "/api/v10"
        routes = [
            ("GET", "/gateway", self._gateway_ws),
            ("GET", f"{api}/users/@me", self._me),
            ("GET", f"{api}/oauth2/applications/@me", self._application),
            ("GET", f"{api}/gateway/bot", self._gateway_bot),
            ("GET", f"{api}/gateway", self._gateway_bot),
            ("PUT", f"{api}/applications/{{app}}/commands", self._put_commands),
            ("PUT", f"{api}/applications/{{app}}/guilds/{{guild}}/commands", self._put_commands),
            ("POST", f"{api}/interactions/{{iid}}/{{token}}/callback", self._callback),
            ("GET", f"{api}/webhooks/{{wid}}/{{token}}/messages/{{mid}}", self._webhook_get),
            ("PATCH", f"{api}/webhooks/{{wid}}/{{token}}/messages/{{mid}}", self._webhook_edit),
            ("POST", f"{api}/webhooks/{{wid}}/{{token}}", self._webhook_post),
            ("POST", f"{api}/channels/{{cid}}/messages", self._create_message),
            ("GET", f"{api}/channels/{{cid}}/messages", self._history),
            ("GET", f"{api}/channels/{{cid}}/messages/{{mid}}", self._get_message),
            ("DELETE", f"{api}/channels/{{cid}}/messages/{{mid}}", self._delete_message),
            ("PATCH", f"{api}/channels/{{cid}}/messages/{{mid}}", self._edit_message),
            (
                "PUT",
                f"{api}/channels/{{cid}}/messages/{{mid}}/reactions/{{emoji}}/@me",
                self._react,
            ),
            ("GET", f"{api}/channels/{{cid}}/messages/{{mid}}/reactions/{{emoji}}", self._reactors),
            ("GET", f"{api}/guilds/{{gid}}/members/{{uid}}", self._member),
            ("GET", f"{api}/guilds/{{gid}}", self._guild),
            ("GET", f"{api}/guilds/{{gid}}/stickers", self._list_stickers),
            ("POST", f"{api}/guilds/{{gid}}/stickers", self._create_sticker),
            ("GET", f"{api}/channels/{{cid}}", self._channel),
            ("GET", "/attachments/{aid}/{name}", self._attachment),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        # no access log: request paths carry webhook and interaction tokens
        self._runner, self.port = await serve(app, access_log=None)

    async def close(self) -> None:
        self.posts_released.set()
        self.stickers_released.set()
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def webhook_url(self) -> str:
        return f"{self.api_base}/webhooks/{WEBHOOK_ID}/{self.webhook_token}"

    # ------------------------------------------------------------------ plumbing
    def _next_id(self) -> int:
        return next(self._ids)

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except DiscordError as exc:
            self.refused.append((request.path, exc.code, exc.message))
            return _json({"message": exc.message, "code": exc.code}, status=exc.status)

    async def _body(self, request: web.Request) -> tuple[Any, list[FakeAttachment]]:
        """JSON, or multipart with `payload_json` and `files[n]` (the way discord.py uploads)."""
        files: list[FakeAttachment] = []
        if request.content_type.startswith("multipart/"):
            body: Any = None
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    continue
                data = await part.read()
                if part.name == "payload_json":
                    body = json.loads(data)
                else:
                    files.append(
                        FakeAttachment(
                            id=self._next_id(),
                            filename=part.filename or "file",
                            size=len(data),
                            content_type=part.headers.get("Content-Type", ""),
                            data=bytes(data),
                        )
                    )
        elif request.can_read_body:
            body = await request.json()
        else:
            body = None
        self.requests.append(
            Recorded(request.method, request.path, body, tuple((f.filename, f.size) for f in files))
        )
        return body, files

    def _check_message(self, body: JSON, files: list[FakeAttachment]) -> None:
        content = body.get("content") or ""
        if len(content) > CONTENT_LIMIT:
            raise DiscordError(400, 50035, "content: Must be 2000 or fewer in length.")
        if len(files) > FILES_LIMIT:
            raise DiscordError(400, 50035, "files: Must be 10 or fewer in length.")
        for file in files:
            if file.size > self.upload_limit:
                raise DiscordError(413, 40005, "Request entity too large")
        if len(body.get("embeds") or []) > 10:
            raise DiscordError(400, 50035, "embeds: Must be 10 or fewer in length.")
        for embed in body.get("embeds") or []:
            if len(embed.get("description") or "") > 4096:
                raise DiscordError(400, 50035, "embeds: description too long")

    def _new_message(
        self, channel_id: int, body: JSON, files: list[FakeAttachment], **extra: Any
    ) -> FakeMessage:
        self._check_message(body, files)
        reference = (body.get("message_reference") or {}).get("message_id")
        message = FakeMessage(
            id=self._next_id(),
            channel_id=channel_id,
            content=body.get("content") or "",
            embeds=body.get("embeds") or [],
            components=body.get("components") or [],
            attachments=files,
            flags=int(body.get("flags") or 0),
            reference_id=int(reference) if reference else None,
            **extra,
        )
        message.history.append(message.content)
        message.allowed_mentions.append(body.get("allowed_mentions"))
        message.pinged = pings(message.content, body.get("allowed_mentions"))
        self.messages[message.id] = message
        return message

    def _edit(self, message: FakeMessage, body: JSON, files: list[FakeAttachment]) -> None:
        merged = {"content": body.get("content", message.content), **body}
        self._check_message(merged, files)
        if "content" in body:
            message.content = body["content"] or ""
        if "embeds" in body:
            message.embeds = body["embeds"] or []
        if "components" in body:
            message.components = body["components"] or []
        if "attachments" in body or files:
            kept = {str(a.get("id")) for a in body.get("attachments") or []}
            message.attachments = [a for a in message.attachments if str(a.id) in kept] + files
        message.edits += 1
        message.history.append(message.content)
        # an edit that leaves the content alone leaves its mentions alone (discord.py, like
        # Discord, sends allowed_mentions only with new content)
        previous = message.allowed_mentions[-1] if message.allowed_mentions else None
        message.allowed_mentions.append(
            body.get("allowed_mentions") if "content" in body else previous
        )

    def _message_of(self, request: web.Request) -> FakeMessage:
        message = self.messages.get(int(request.match_info["mid"]))
        if message is None or message.channel_id != int(request.match_info["cid"]):
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    def _interaction_of(self, token: str) -> FakeInteraction:
        for interaction in self.interactions.values():
            if interaction.token == token:
                return interaction
        raise DiscordError(404, 10015, "Unknown Webhook")

    # ------------------------------------------------------------------ login and gateway
    async def _me(self, request: web.Request) -> web.Response:
        self.logins += 1
        if self.drop_logins > 0:
            self.drop_logins -= 1
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection dropped unanswered
            raise web.HTTPServiceUnavailable
        if request.headers.get("Authorization", "") != f"Bot {self.token}":
            raise DiscordError(401, 0, "401: Unauthorized")
        return _json(BOT.payload())

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(APP_ID),
                "name": "MediaOverload",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": ALICE.payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _gateway_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            op = message.get("op")
            if op == 1:
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                await self._identify(ws)
            elif op == 6:
                await self._resume(ws, message["d"])
        if self._ws is ws:
            self._ws = None
            self.connected.clear()
        return ws

    async def _identify(self, ws: web.WebSocketResponse) -> None:
        self.identifies += 1
        self._session_id = secrets.token_hex(8)
        self._events.clear()
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": BOT.payload(),
                "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
                "session_id": self._session_id,
                "resume_gateway_url": self.gateway_url,
                "shard": [0, 1],
                "application": {"id": str(APP_ID), "flags": 0},
            },
        )
        await self.dispatch("GUILD_CREATE", self.guild_payload())
        self.connected.set()

    async def _resume(self, ws: web.WebSocketResponse, data: JSON) -> None:
        if data.get("session_id") != self._session_id:
            await ws.send_json({"op": 9, "d": False, "s": None, "t": None})
            return
        self.resumes += 1
        for event in self._events:
            if event["s"] > int(data.get("seq") or 0):
                await ws.send_json(event)
        await self.dispatch("RESUMED", {})
        self.connected.set()

    async def dispatch(self, event: str, data: JSON) -> None:
        """Send an event to the bot, or keep it for a RESUME when the gateway is down."""
        self._seq += 1
        frame = {"op": 0, "t": event, "s": self._seq, "d": data}
        self._events.append(frame)
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_json(frame)

    async def drop_gateway(self) -> None:
        """Close the gateway as a network failure would (resumable, code 4000)."""
        ws = self._ws
        self.connected.clear()
        if ws is not None:
            self._ws = None
            await ws.close(code=4000, message=b"dropped by the test")

    def guild_payload(self) -> JSON:
        def role(role_id: int, name: str, position: int) -> JSON:
            return {
                "id": str(role_id),
                "name": name,
                "color": 0,
                "colors": {"primary_color": 0},
                "hoist": False,
                "position": position,
                "permissions": "0" if role_id != GUILD_ID else "2248473465835073",
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }

        def channel(channel_id: int, name: str, position: int) -> JSON:
            return {
                "id": str(channel_id),
                "type": 0,
                "guild_id": str(GUILD_ID),
                "name": name,
                "position": position,
                "permission_overwrites": [],
                "topic": None,
                "nsfw": False,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "parent_id": None,
            }

        return {
            "id": str(GUILD_ID),
            "name": "Studio",
            "icon": None,
            "owner_id": str(CAROL.id),
            "roles": [
                role(GUILD_ID, "@everyone", 0),
                role(GENERATE_ROLE, "generate", 1),
                role(REVIEW_ROLE, "review", 2),
                role(ADMIN_ROLE, "admin", 3),
            ],
            "emojis": [],
            "stickers": list(self.stickers.values()),
            "features": [],
            "member_count": len(USERS),
            "members": [BOT.member()],
            "channels": [
                channel(REVIEW_CHANNEL, "review", 0),
                channel(NOTIFY_CHANNEL, "notices", 1),
                channel(GENERAL_CHANNEL, "general", 2),
            ],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "unavailable": False,
            "large": False,
            "joined_at": "2025-01-01T00:00:00+00:00",
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "system_channel_flags": 0,
            "premium_tier": self.premium_tier,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "afk_timeout": 300,
            "description": None,
            "banner": None,
            "splash": None,
            "discovery_splash": None,
            "vanity_url_code": None,
            "premium_progress_bar_enabled": False,
        }

    # ------------------------------------------------------------------ REST: commands
    async def _put_commands(self, request: web.Request) -> web.Response:
        body, _ = await self._body(request)
        guild = int(request.match_info["guild"]) if "guild" in request.match_info else None
        synced = []
        for command in body:
            echo = dict(command)
            echo.update(id=str(self._next_id()), application_id=str(APP_ID), version="1")
            if guild is not None:
                echo["guild_id"] = str(guild)
            synced.append(echo)
        self.commands[guild] = synced
        self.command_syncs.append(guild)
        return _json(synced)

    # ------------------------------------------------------------------ REST: interactions
    async def _callback(self, request: web.Request) -> web.Response:
        body, files = await self._body(request)
        interaction = self.interactions.get(int(request.match_info["iid"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if time.monotonic() - interaction.created > ANSWER_WITHIN:
            raise DiscordError(404, 10062, "Unknown interaction")
        if interaction.response is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        kind = body["type"]
        data = body.get("data") or {}
        message: FakeMessage | None = None
        if kind in (4, 5):
            message = self._new_message(interaction.channel_id, data, files, webhook_id=APP_ID)
            interaction.original = message
            interaction.loading = kind == 5
        elif kind == 7 and interaction.original is not None:
            self._edit(interaction.original, data, files)
            message = interaction.original
        interaction.response = body
        interaction.answered.set()
        reply: JSON = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(int(data.get("flags") or 0) & EPHEMERAL),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            reply["interaction"]["response_message_id"] = str(message.id)
            reply["resource"]["message"] = message.payload()
        return _json(reply)

    async def _webhook_get(self, request: web.Request) -> web.Response:
        interaction = self._interaction_of(request.match_info["token"])
        message = self._webhook_message(interaction, request.match_info["mid"])
        return _json(message.payload())

    async def _webhook_edit(self, request: web.Request) -> web.Response:
        body, files = await self._body(request)
        interaction = self._interaction_of(request.match_info["token"])
        message = self._webhook_message(interaction, request.match_info["mid"])
        self._edit(message, body, files)
        if message is interaction.original:
            interaction.loading = False
        return _json(message.payload())

    def _webhook_message(self, interaction: FakeInteraction, mid: str) -> FakeMessage:
        if mid == "@original":
            if interaction.original is None:
                raise DiscordError(404, 10008, "Unknown Message")
            return interaction.original
        for message in interaction.followups:
            if message.id == int(mid):
                return message
        raise DiscordError(404, 10008, "Unknown Message")

    async def _webhook_post(self, request: web.Request) -> web.Response:
        body, files = await self._body(request)
        token = request.match_info["token"]
        if int(request.match_info["wid"]) == WEBHOOK_ID and token == self.webhook_token:
            message = self._new_message(NOTIFY_CHANNEL, body, files, webhook_id=WEBHOOK_ID)
        else:
            interaction = self._interaction_of(token)
            if interaction.response is None:
                raise DiscordError(400, 40060, "Interaction has not been acknowledged.")
            if interaction.loading and interaction.original is not None:
                # Discord: the first follow-up of a deferred interaction replaces its
                # "thinking" message and keeps that message's flags, so after a public defer
                # it is public whatever its own `ephemeral` flag says
                interaction.loading = False
                body = {k: v for k, v in body.items() if k != "flags"}
                self._edit(interaction.original, body, files)
                message = interaction.original
            else:
                message = self._new_message(interaction.channel_id, body, files, webhook_id=APP_ID)
                interaction.followups.append(message)
        if request.query.get("wait") in ("true", "1", "True"):
            return _json(message.payload())
        return web.Response(status=204)

    # ------------------------------------------------------------------ REST: messages
    async def _create_message(self, request: web.Request) -> web.Response:
        if self.posts_left is not None:
            if self.posts_left <= 0:
                # held as if the sender were gone: the request never completes
                self.posts_held += 1
                await self.posts_released.wait()
                raise DiscordError(503, 0, "held by the test")
            self.posts_left -= 1
        body, files = await self._body(request)
        channel_id = int(request.match_info["cid"])
        if channel_id not in (REVIEW_CHANNEL, NOTIFY_CHANNEL, GENERAL_CHANNEL):
            raise DiscordError(404, 10003, "Unknown Channel")
        message = self._new_message(channel_id, body or {}, files)
        return _json(message.payload())

    async def _history(self, request: web.Request) -> web.Response:
        """A channel's messages newest first, as Discord pages them: `limit` (1-100, default
        50) before or after a message id."""
        channel_id = int(request.match_info["cid"])
        if channel_id not in (REVIEW_CHANNEL, NOTIFY_CHANNEL, GENERAL_CHANNEL):
            raise DiscordError(404, 10003, "Unknown Channel")
        limit = int(request.query.get("limit", 50))
        if not 1 <= limit <= 100:
            raise DiscordError(400, 50035, "limit: must be between 1 and 100")
        found = sorted(
            (m.id for m in self.channel_messages(channel_id) if not m.ephemeral), reverse=True
        )
        if "before" in request.query:
            found = [i for i in found if i < int(request.query["before"])]
        if "after" in request.query:
            found = [i for i in found if i > int(request.query["after"])][-limit:]
        return _json([self.messages[i].payload() for i in found[:limit]])

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self._message_of(request)
        if message.author.id != BOT_ID:
            raise DiscordError(403, 50013, "Missing Permissions")
        del self.messages[message.id]
        self.deleted.append(message)
        return web.Response(status=204)

    async def _get_message(self, request: web.Request) -> web.Response:
        return _json(self._message_of(request).payload())

    async def _edit_message(self, request: web.Request) -> web.Response:
        body, files = await self._body(request)
        message = self._message_of(request)
        if message.author.id != BOT_ID:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._edit(message, body, files)
        return _json(message.payload())

    async def _react(self, request: web.Request) -> web.Response:
        await self._body(request)
        message = self._message_of(request)
        await self.react(message, request.match_info["emoji"], BOT)
        return web.Response(status=204)

    async def _reactors(self, request: web.Request) -> web.Response:
        message = self._message_of(request)
        users = message.reactions.get(request.match_info["emoji"], [])
        after = int(request.query.get("after", 0))
        limit = int(request.query.get("limit", 25))
        by_id = {user.id: user for user in USERS}
        chosen = sorted(u for u in users if u > after)[:limit]
        return _json([by_id[u].payload() for u in chosen])

    # ------------------------------------------------------------------ REST: stickers
    def _sticker_guild(self, request: web.Request) -> None:
        if request.headers.get("Authorization", "") != f"Bot {self.token}":
            raise DiscordError(401, 0, "401: Unauthorized")
        if int(request.match_info["gid"]) != GUILD_ID:
            raise DiscordError(404, 10004, "Unknown Guild")

    async def _guild(self, request: web.Request) -> web.Response:
        self._sticker_guild(request)
        return _json(self.guild_payload())

    async def _list_stickers(self, request: web.Request) -> web.Response:
        self._sticker_guild(request)
        return _json(list(self.stickers.values()))

    async def _create_sticker(self, request: web.Request) -> web.StreamResponse:
        """POST /guilds/{id}/stickers, a multipart form (name, description, tags, file), with
        Discord's checks and errors: 50035 for a bad field, 50045 for a file over 512 KB,
        50046 for one that is no PNG / APNG / GIF, 30039 when the guild's slots are full."""
        self._sticker_guild(request)
        fields: dict[str, str] = {}
        data = b""
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                data = bytes(await part.read())
            elif part.name:
                fields[part.name] = (await part.read()).decode()
        self.sticker_uploads += 1
        self.requests.append(
            Recorded("POST", request.path, dict(fields), (("file", len(data)),) if data else ())
        )
        name, tags = fields.get("name", ""), fields.get("tags", "")
        description = fields.get("description", "")
        if not 2 <= len(name) <= 30:
            raise DiscordError(400, 50035, "Invalid Form Body: name: Must be between 2 and 30")
        if not 1 <= len(tags) <= 200:
            raise DiscordError(400, 50035, "Invalid Form Body: tags: Must be between 1 and 200")
        if description and not 2 <= len(description) <= 100:
            raise DiscordError(400, 50035, "Invalid Form Body: description: Must be 2 to 100")
        if len(data) > STICKER_BYTES:
            raise DiscordError(400, 50045, "File uploaded exceeds the maximum size")
        if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data[:6] in (b"GIF87a", b"GIF89a")):
            raise DiscordError(400, 50046, "Invalid Asset")
        slots = STICKER_SLOTS[self.premium_tier]
        if len(self.stickers) >= slots:
            raise DiscordError(400, 30039, f"Maximum number of stickers reached ({slots})")
        sticker_id = self._next_id()
        sticker = {
            "id": str(sticker_id),
            "name": name,
            "tags": tags,
            "type": 2,
            "format_type": 2 if b"acTL" in data[:200] else 1,
            "description": description or None,
            "available": True,
            "guild_id": str(GUILD_ID),
            "user": BOT.payload(),
        }
        self.stickers[sticker_id] = sticker
        if self.sticker_answers_left is not None:
            if self.sticker_answers_left <= 0:
                self.sticker_answers_held += 1
                await self.stickers_released.wait()
                assert request.transport is not None
                request.transport.abort()  # made, but the answer is lost
                raise web.HTTPServiceUnavailable
            self.sticker_answers_left -= 1
        return _json(sticker, status=201)

    async def _member(self, request: web.Request) -> web.Response:
        for user in USERS:
            if user.id == int(request.match_info["uid"]):
                return _json(user.member())
        raise DiscordError(404, 10007, "Unknown Member")

    async def _channel(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["cid"])
        for channel in self.guild_payload()["channels"]:
            if int(channel["id"]) == channel_id:
                return _json(channel)
        raise DiscordError(404, 10003, "Unknown Channel")

    async def _attachment(self, request: web.Request) -> web.Response:
        """The CDN: a file a member attached, as uploaded."""
        found = self.uploads.get(int(request.match_info["aid"]))
        if found is None:
            raise web.HTTPNotFound()
        self.downloads[found.id] = self.downloads.get(found.id, 0) + 1
        return web.Response(body=found.data, content_type=found.content_type)

    # ------------------------------------------------------------------ test side: people act
    def upload(
        self,
        filename: str,
        data: bytes,
        content_type: str,
        *,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
    ) -> FakeAttachment:
        """A file a member attaches to a command's attachment option (pass it as the value);
        `size` is what Discord declares (the real size unless given)."""
        attachment_id = self._next_id()
        attachment = FakeAttachment(
            id=attachment_id,
            filename=filename,
            size=len(data) if size is None else size,
            content_type=content_type,
            data=data,
            url=f"http://127.0.0.1:{self.port}/attachments/{attachment_id}/{filename}",
            width=width,
            height=height,
        )
        self.uploads[attachment_id] = attachment
        return attachment

    def _interaction_payload(self, interaction: FakeInteraction, **extra: Any) -> JSON:
        member = interaction.user.member() | {"permissions": "0"}
        return {
            "id": str(interaction.id),
            "application_id": str(APP_ID),
            "type": interaction.type,
            "data": interaction.data,
            "guild_id": str(GUILD_ID),
            "channel_id": str(interaction.channel_id),
            "channel": next(
                (
                    c
                    for c in self.guild_payload()["channels"]
                    if int(c["id"]) == interaction.channel_id
                ),
                None,
            ),
            "member": member,
            "token": interaction.token,
            "version": 1,
            "locale": "en-US",
            "guild_locale": "en-US",
            "app_permissions": "2248473465835073",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(GUILD_ID)},
            "context": 0,
            "attachment_size_limit": self.upload_limit,
            **extra,
        }

    def _dm_payload(self, interaction: FakeInteraction) -> JSON:
        """An interaction from a direct message: no guild, no member, a DM channel."""
        payload = self._interaction_payload(interaction)
        for key in ("guild_id", "member", "guild_locale"):
            payload.pop(key)
        payload |= {
            "user": interaction.user.payload(),
            "channel": {
                "id": str(interaction.channel_id),
                "type": 1,
                "recipients": [interaction.user.payload()],
            },
            "authorizing_integration_owners": {"1": str(interaction.user.id)},
            "context": 1,
        }
        return payload

    async def _interact(
        self, kind: int, data: JSON, user: FakeUser, channel_id: int, **extra: Any
    ) -> FakeInteraction:
        dm = channel_id == DM_CHANNEL
        interaction = FakeInteraction(
            id=self._next_id(),
            token=secrets.token_urlsafe(48),
            type=kind,
            user=user,
            channel_id=channel_id,
            created=time.monotonic(),
            data=data,
        )
        self.interactions[interaction.id] = interaction
        payload = (
            self._dm_payload(interaction) if dm else self._interaction_payload(interaction, **extra)
        )
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    async def say(
        self, user: FakeUser, content: str, *, channel_id: int = GENERAL_CHANNEL
    ) -> FakeMessage:
        """`user` writes `content` in a channel of the guild."""
        message = FakeMessage(
            id=self._next_id(), channel_id=channel_id, content=content, author=user
        )
        self.messages[message.id] = message
        await self.dispatch("MESSAGE_CREATE", message.payload())
        return message

    async def direct_message(self, user: FakeUser, content: str) -> FakeMessage:
        """`user` writes to the bot in a direct message (the bot may or may not be told)."""
        message = FakeMessage(
            id=self._next_id(), channel_id=DM_CHANNEL, content=content, author=user
        )
        payload = message.payload()
        payload.pop("guild_id")
        await self.dispatch("MESSAGE_CREATE", payload)
        return message

    def command(self, name: str) -> JSON:
        """The synced command of that name (guild commands first)."""
        for scope in (GUILD_ID, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command
        raise AssertionError(f"/{name} was never synced")

    def _options(self, name: str, values: dict[str, Any], focused: str | None) -> list[JSON]:
        kinds = {o["name"]: o["type"] for o in self.command(name).get("options", [])}
        options = []
        for key, value in values.items():
            if isinstance(value, FakeAttachment):
                value = str(value.id)
            option: JSON = {"name": key, "type": kinds[key], "value": value}
            if key == focused:
                option["focused"] = True
            options.append(option)
        return options

    def _command_data(self, name: str, values: dict[str, Any], focused: str | None) -> JSON:
        command = self.command(name)
        data: JSON = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": self._options(name, values, focused),
        }
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        files = [v for v in values.values() if isinstance(v, FakeAttachment)]
        if files:
            data["resolved"] = {"attachments": {str(f.id): f.payload() for f in files}}
        return data

    async def slash(
        self,
        name: str,
        *,
        user: FakeUser = ALICE,
        channel_id: int = GENERAL_CHANNEL,
        answer_within: float | None = ANSWER_WITHIN,
        **values: Any,
    ) -> FakeInteraction:
        """Someone runs /name with options; returns once the bot acknowledged it (at once
        with answer_within=None)."""
        interaction = await self._interact(
            2, self._command_data(name, values, None), user, channel_id
        )
        if answer_within is not None:
            await asyncio.wait_for(interaction.answered.wait(), answer_within)
        return interaction

    async def autocomplete(
        self, name: str, focused: str, *, user: FakeUser = ALICE, **values: Any
    ) -> list[JSON]:
        """Someone types in option `focused`; the choices the bot offers."""
        interaction = await self._interact(
            4, self._command_data(name, values, focused), user, GENERAL_CHANNEL
        )
        await asyncio.wait_for(interaction.answered.wait(), ANSWER_WITHIN)
        return interaction.choices

    async def barrier(self) -> FakeInteraction:
        """A later event the bot answers, to prove that an earlier one did nothing without
        waiting a while: Alice types in /generate's character option in the guild. Once its
        answer is in, the bot has taken in every event dispatched before (the gateway keeps
        their order). Its callback is one request, whose path names the interaction."""
        interaction = await self._interact(
            4,
            self._command_data("generate", {"character": ""}, "character"),
            ALICE,
            GENERAL_CHANNEL,
        )
        await asyncio.wait_for(interaction.answered.wait(), ANSWER_WITHIN)
        return interaction

    async def click(
        self, message: FakeMessage, custom_id: str, *, user: FakeUser = ALICE
    ) -> FakeInteraction:
        """Someone presses a button of a message."""
        interaction = await self._interact(
            3,
            {"custom_id": custom_id, "component_type": 2},
            user,
            message.channel_id,
            message=message.payload(),
        )
        await asyncio.wait_for(interaction.answered.wait(), ANSWER_WITHIN)
        return interaction

    async def submit(
        self,
        modal_from: FakeInteraction,
        values: dict[str, str],
        *,
        user: FakeUser = ALICE,
        answer_within: float | None = ANSWER_WITHIN,
    ) -> FakeInteraction:
        """Someone fills the modal a button opened and submits it."""
        modal = modal_from.modal
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in values.items()
        ]
        interaction = await self._interact(
            5, {"custom_id": modal["custom_id"], "components": rows}, user, modal_from.channel_id
        )
        if answer_within is not None:
            await asyncio.wait_for(interaction.answered.wait(), answer_within)
        return interaction

    async def react(
        self, message: FakeMessage, emoji: str, user: FakeUser, *, online: bool = True
    ) -> None:
        """`user` adds a reaction; with online=False the bot is not told (it was away)."""
        users = message.reactions.setdefault(emoji, [])
        if user.id in users:
            return
        users.append(user.id)
        if online:
            await self.dispatch(
                "MESSAGE_REACTION_ADD",
                {
                    "user_id": str(user.id),
                    "channel_id": str(message.channel_id),
                    "message_id": str(message.id),
                    "guild_id": str(GUILD_ID),
                    "member": user.member(),
                    "emoji": {"id": None, "name": emoji},
                    "message_author_id": str(message.author.id),
                    "burst": False,
                    "type": 0,
                },
            )

    async def unreact(self, message: FakeMessage, emoji: str, user: FakeUser) -> None:
        users = message.reactions.get(emoji, [])
        if user.id not in users:
            return
        users.remove(user.id)
        await self.dispatch(
            "MESSAGE_REACTION_REMOVE",
            {
                "user_id": str(user.id),
                "channel_id": str(message.channel_id),
                "message_id": str(message.id),
                "guild_id": str(GUILD_ID),
                "emoji": {"id": None, "name": emoji},
                "burst": False,
                "type": 0,
            },
        )

    # ------------------------------------------------------------------ test side: looking
    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    async def until(
        self, check: Callable[[], Any], *, within: float = 5.0, what: str = "the condition"
    ) -> Any:
        """Poll `check` until it returns something truthy; that value (`tests.waiting.until`
        with the short default of a test against this fake)."""
        return await until(check, within=within, what=what)
