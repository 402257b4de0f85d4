"""A sticker pack uploaded to the guild over Discord's REST API (the fake Discord's sticker
endpoints): only what the guild's slots hold, each sticker at most once, a lost answer found in
the guild's list, Discord's refusals in sentences, the token never shown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from PIL import Image, ImageDraw
from pydantic import SecretStr

from pipeline.models import (
    Decision,
    Job,
    MediaItem,
    MediaKind,
    Run,
    RunState,
    Sticker,
    StickerState,
    utcnow,
)
from pipeline.publish.discord_stickers import DiscordStickers
from pipeline.publish.errors import TransientPublishError
from pipeline.publish.stickers import StickerRefused, StickerUploader, unfinished
from pipeline.store import SqlStore
from tests.fakes import discord as fd
from tests.waiting import until

NAMES = ("Wave", "Sleepy", "Laugh", "Thumbs up")


def sticker_file(path: Path, shade: int) -> None:
    image = Image.new("RGBA", (320, 320), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((40, 40, 280, 280), fill=(shade, 80, 200, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


async def approved_pack(store: SqlStore, folder: Path, count: int = 4) -> Run:
    """A run in publishing with `count` stickers made and every one chosen."""
    media = []
    for index in range(count):
        sticker_file(folder / "stickers" / f"{index + 1:02d}.png", 40 * index)
        media.append(MediaItem(f"stickers/{index + 1:02d}.png", MediaKind.IMAGE, index))
    run = Run.new(Job("testy")).advance(
        RunState.PUBLISHING,
        descriptions=tuple(f"prompt {n}" for n in range(count)),
        media=tuple(media),
        stickers=tuple(
            Sticker(name=NAMES[n], tags=f"{NAMES[n].lower()}, fox", expression=f"Fox: {NAMES[n]}")
            for n in range(count)
        ),
        decision=Decision(approved=True, selected=tuple(range(count)), by="alice", at=utcnow()),
    )
    await store.save_run(run)
    return run


def api(
    fake: fd.FakeDiscord, *, token: str = fd.BOT_TOKEN, timeout: float = 10.0
) -> DiscordStickers:
    return DiscordStickers(
        token=SecretStr(token), guild_id=fd.GUILD_ID, api_base=fake.api_base, timeout=timeout
    )


def states(run: Run) -> list[StickerState]:
    return [sticker.state for sticker in run.stickers]


def existing(fake: fd.FakeDiscord, count: int) -> None:
    for number in range(count):
        fake.stickers[900 + number] = {
            "id": str(900 + number),
            "name": f"old {number}",
            "tags": "x",
        }


async def test_only_what_the_free_slots_hold_is_uploaded_and_the_rest_named(
    store: SqlStore, tmp_path: Path
) -> None:
    """A guild without boosts has 5 slots; with 3 taken, 2 of 4 stickers go up with the name,
    tags and description the model wrote, and the 2 others are refused saying why. Freeing
    slots (a boost) and retrying uploads only those two."""
    async with fd.FakeDiscord() as fake:
        existing(fake, 3)
        run = await approved_pack(store, tmp_path)
        uploader = StickerUploader(api(fake), store)
        done = await uploader.upload(run, tmp_path)
        assert states(done) == [StickerState.UPLOADED] * 2 + [StickerState.REFUSED] * 2
        assert fake.sticker_uploads == 2
        made = [s for s in fake.stickers.values() if s["name"] in NAMES]
        assert [(s["name"], s["tags"], s["description"]) for s in made] == [
            ("Wave", "wave, fox", "Fox: Wave"),
            ("Sleepy", "sleepy, fox", "Fox: Sleepy"),
        ]
        assert done.stickers[0].sticker_id == made[0]["id"]
        assert "no free sticker slot in the guild (all 5 used" in (done.stickers[2].error or "")
        assert unfinished(done)[0].startswith("sticker Laugh (no free sticker slot")
        saved = await store.load_run(run.id)
        assert saved is not None
        assert states(saved) == states(done)

        fake.premium_tier = 1  # 15 slots now
        again = await uploader.upload(saved, tmp_path)
        assert states(again) == [StickerState.UPLOADED] * 4
        assert fake.sticker_uploads == 4
        assert unfinished(again) == []


async def test_a_lost_answer_is_found_in_the_guilds_list_not_uploaded_again(
    store: SqlStore, tmp_path: Path
) -> None:
    """Killed while Discord made the second sticker but before its answer came: the saved run
    says UPLOADING, and the retry finds it in the guild's list and uploads only the rest."""
    async with fd.FakeDiscord() as fake:
        fake.premium_tier = 1
        fake.sticker_answers_left = 1
        run = await approved_pack(store, tmp_path, count=3)
        task = asyncio.create_task(StickerUploader(api(fake), store).upload(run, tmp_path))
        await until(lambda: fake.sticker_answers_held == 1, what="the second upload held")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fake.stickers_released.set()
        saved = await store.load_run(run.id)
        assert saved is not None
        assert states(saved) == [
            StickerState.UPLOADED,
            StickerState.UPLOADING,
            StickerState.PENDING,
        ]
        fake.sticker_answers_left = None
        done = await StickerUploader(api(fake), store).upload(saved, tmp_path)
        assert states(done) == [StickerState.UPLOADED] * 3
        assert fake.sticker_uploads == 3  # the lost one was not sent twice
        assert len(fake.stickers) == 3
        assert len({s.sticker_id for s in done.stickers}) == 3


async def test_a_file_discord_will_not_take_is_refused_and_the_others_go_up(
    store: SqlStore, tmp_path: Path
) -> None:
    """Discord answers 50046 to a file that is no PNG; that sticker is refused in a sentence
    with Discord's code, the next one is uploaded."""
    async with fd.FakeDiscord() as fake:
        run = await approved_pack(store, tmp_path, count=2)
        Image.new("RGB", (320, 320), "red").save(tmp_path / "stickers" / "01.png", format="JPEG")
        done = await StickerUploader(api(fake), store).upload(run, tmp_path)
        assert states(done) == [StickerState.REFUSED, StickerState.UPLOADED]
        assert "Discord refused the sticker's file (50046" in (done.stickers[0].error or "")
        assert fake.refused[0][1] == 50046


async def test_a_full_guild_answers_30039_and_that_is_a_missing_slot() -> None:
    """The slots filled between the count and the upload (another uploader): Discord's 30039
    is read as no free slot."""
    async with fd.FakeDiscord() as fake:
        existing(fake, 5)
        path = Path(__file__).parent / "sticker.png"
        try:
            sticker_file(path, 10)
            with pytest.raises(StickerRefused, match="no free sticker slot") as refused:
                await api(fake).create(Sticker("Wave", "wave"), path)
        finally:
            path.unlink(missing_ok=True)
        assert refused.value.no_slot
        assert fake.refused[-1][1] == 30039


async def test_a_refused_token_is_named_and_never_shown(store: SqlStore, tmp_path: Path) -> None:
    async with fd.FakeDiscord() as fake:
        run = await approved_pack(store, tmp_path, count=1)
        done = await StickerUploader(api(fake, token="wrong-secret-token"), store).upload(
            run, tmp_path
        )
        assert states(done) == [StickerState.REFUSED]
        assert "check DISCORD_TOKEN" in (done.stickers[0].error or "")
        assert "wrong-secret-token" not in repr(done)
        assert fake.sticker_uploads == 0


async def test_an_upload_without_an_answer_fails_at_its_deadline(
    store: SqlStore, tmp_path: Path
) -> None:
    """Discord silent past the deadline: the sticker is FAILED, the run is not stuck, and the
    retry finds the sticker Discord made meanwhile instead of uploading it again."""
    async with fd.FakeDiscord() as fake:
        fake.sticker_answers_left = 0
        run = await approved_pack(store, tmp_path, count=1)
        done = await StickerUploader(api(fake, timeout=0.5), store).upload(run, tmp_path)
        assert states(done) == [StickerState.FAILED]
        fake.stickers_released.set()
        fake.sticker_answers_left = None
        again = await StickerUploader(api(fake), store).upload(done, tmp_path)
        assert states(again) == [StickerState.UPLOADED]
        assert fake.sticker_uploads == 1  # Discord had made it: found, not sent again
        fake.sticker_answers_left = 0
        fake.stickers_released.clear()
        with pytest.raises(TransientPublishError):
            await api(fake, timeout=0.5).create(
                Sticker("Wave", "wave"), tmp_path / "stickers/01.png"
            )


async def test_a_file_over_512_kb_is_refused_before_sending_and_by_discord(
    store: SqlStore, tmp_path: Path
) -> None:
    """Our client does not send a file over Discord's 512 KB (the sticker is refused saying
    so); Discord itself answers such a file with 50045, which the fake does too."""
    async with fd.FakeDiscord() as fake:
        run = await approved_pack(store, tmp_path, count=1)
        big = tmp_path / "stickers" / "01.png"
        big.write_bytes(big.read_bytes() + b"\0" * (600 * 1024))
        done = await StickerUploader(api(fake), store).upload(run, tmp_path)
        assert states(done) == [StickerState.REFUSED]
        assert "over Discord's 512 KB" in (done.stickers[0].error or "")
        assert fake.sticker_uploads == 0
        form = aiohttp.FormData()
        for key, value in (("name", "Big"), ("tags", "big")):
            form.add_field(key, value)
        form.add_field("file", big.read_bytes(), filename="01.png", content_type="image/png")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{fake.api_base}/guilds/{fd.GUILD_ID}/stickers",
                data=form,
                headers={"Authorization": f"Bot {fd.BOT_TOKEN}"},
            ) as answer,
        ):
            assert answer.status == 400
            assert (await answer.json())["code"] == 50045
