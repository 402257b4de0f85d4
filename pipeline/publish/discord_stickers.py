"""The guild's stickers over Discord's REST API (aiohttp), with the bot's token: the StickerApi.

`GET /guilds/{id}` (its premium tier: the slots), `GET /guilds/{id}/stickers`, and `POST
/guilds/{id}/stickers` (multipart: name, description, tags, file). Every call has a deadline
and every answer a size cap; Discord's errors become TransientPublishError (5xx, 429, a
timeout) or StickerRefused with a sentence (30039 no slot, 50045 / 50046 the file, 50013
permissions, 401 the token). The token never reaches a message or a log. Built by `wiring`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from pipeline.models import Sticker
from pipeline.publish.errors import TransientPublishError, scrub
from pipeline.publish.stickers import (
    SLOTS_BY_TIER,
    GuildStickers,
    RemoteSticker,
    StickerRefused,
    description_of,
)

log = logging.getLogger(__name__)

#: Discord's JSON error codes for stickers (discord.com/developers/docs/topics/opcodes-and-
#: status-codes#json-json-error-codes)
MAX_STICKERS = 30039
FILE_TOO_LARGE = 50045
INVALID_FILE = 50046
MISSING_PERMISSIONS = 50013
INVALID_FORM = 50035

#: an answer larger than this is not read (a guild's 60 stickers are about 20 KB)
ANSWER_CAP = 1024 * 1024
#: the largest file sent (Discord takes 512 KB)
FILE_CAP = 512 * 1024


class DiscordStickers:
    """StickerApi for one guild."""

    def __init__(
        self,
        *,
        token: SecretStr,
        guild_id: int,
        api_base: str = "https://discord.com/api/v10",
        timeout: float = 30.0,
    ) -> None:
        self._token = token
        self.guild_id = guild_id
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout

    async def guild_stickers(self) -> GuildStickers:
        guild = await self._call("GET", f"/guilds/{self.guild_id}")
        listed = await self._call("GET", f"/guilds/{self.guild_id}/stickers")
        tier = guild.get("premium_tier") if isinstance(guild, dict) else None
        slots = SLOTS_BY_TIER.get(tier if isinstance(tier, int) else 0, SLOTS_BY_TIER[0])
        if not isinstance(listed, list):
            raise TransientPublishError("Discord's sticker list was not a list")
        return GuildStickers(
            slots, tuple(_remote(item) for item in listed if isinstance(item, dict))
        )

    async def create(self, sticker: Sticker, file: Path) -> RemoteSticker:
        data = await asyncio.to_thread(_read_file, file)
        form = aiohttp.FormData()
        form.add_field("name", sticker.name)
        form.add_field("description", description_of(sticker))
        form.add_field("tags", sticker.tags)
        form.add_field("file", data, filename=file.name, content_type="image/png")
        answer = await self._call("POST", f"/guilds/{self.guild_id}/stickers", data=form)
        if not isinstance(answer, dict):
            raise TransientPublishError("Discord's answer was not a sticker")
        return _remote(answer)

    async def _call(self, method: str, path: str, *, data: aiohttp.FormData | None = None) -> Any:
        headers = {"Authorization": f"Bot {self._token.get_secret_value()}"}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, self.api_base + path, headers=headers, data=data) as resp,
            ):
                body = await resp.content.read(ANSWER_CAP + 1)
                if len(body) > ANSWER_CAP:
                    raise TransientPublishError(
                        f"Discord's answer to {method} {path} was over {ANSWER_CAP} bytes"
                    )
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientPublishError(
                f"Discord did not answer {method} {path}: {type(exc).__name__}"
            ) from None
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if 200 <= status < 300:
            return payload
        raise _error(status, payload, path)


def _read_file(path: Path) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(FILE_CAP + 1)
    if len(data) > FILE_CAP:
        raise StickerRefused(f"{path.name} is over Discord's 512 KB for a sticker")
    return data


def _remote(item: dict[str, Any]) -> RemoteSticker:
    return RemoteSticker(
        id=str(item.get("id", "")),
        name=str(item.get("name") or ""),
        tags=str(item.get("tags") or ""),
        description=str(item.get("description") or ""),
    )


def _error(status: int, payload: object, path: str) -> Exception:
    code = payload.get("code") if isinstance(payload, dict) else None
    said = scrub(payload.get("message", "") if isinstance(payload, dict) else "", limit=200)
    if status == 429 or status >= 500:
        wait = payload.get("retry_after") if isinstance(payload, dict) else None
        return TransientPublishError(
            f"Discord answered {status} to {path}: {said}",
            retry_after=float(wait) if isinstance(wait, int | float) else None,
        )
    if status == 401:
        return StickerRefused("Discord refused the bot token (401): check DISCORD_TOKEN")
    if code == MAX_STICKERS:
        return StickerRefused("the guild has no free sticker slot (Discord 30039)", no_slot=True)
    if code in (FILE_TOO_LARGE, INVALID_FILE):
        return StickerRefused(f"Discord refused the sticker's file ({code}: {said})")
    if code == MISSING_PERMISSIONS or status == 403:
        return StickerRefused(
            "the bot may not manage the guild's stickers (it needs Create Expressions)"
        )
    if status == 404:
        return StickerRefused("Discord knows no guild of DISCORD_STICKER_GUILD_ID")
    return StickerRefused(f"Discord refused the sticker ({status}, {code}: {said})")
