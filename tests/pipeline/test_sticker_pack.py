"""A sticker pack end to end: the model's list, the fake ComfyUI drawing (and removing the
background), the stickers cut to Discord's format, review, and the upload to the fake Discord's
guild; a kill in the middle of generating or uploading redoes nothing finished."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from pydantic import SecretStr

from comfy import ComfyPool
from pipeline.characters import Character
from pipeline.models import Decision, Job, Platform, Run, RunState, Sticker, StickerState, utcnow
from pipeline.prompts.stickers import write_stickers
from pipeline.publish.discord_stickers import DiscordStickers
from pipeline.publish.stickers import StickerUploader
from pipeline.run import Idea
from pipeline.store import SqlStore
from tests.doubles import RecordingSink, ScriptedModel
from tests.fakes import discord as fd
from tests.fakes.comfyui import FakeComfyUI
from tests.runs import World
from tests.waiting import until

STICKIE = """
character: {name: Stickie, description: a round blue bird}
generation:
  generation_type_weights: {sticker_pack: 1}
  workflows: {sticker_pack: workflows/text2img.json}
  prompt_method_weights: {arbitrary: 1}
stickers:
  count: 3
  background: BACKGROUND
  animated: ANIMATED
"""

LIST = {
    "stickers": [
        {
            "name": "Wave",
            "expression": "Stickie waves hello",
            "tags": "wave, hi",
            "prompt": "waving",
        },
        {"name": "Sleepy", "expression": "Stickie yawns", "tags": "sleepy", "prompt": "yawning"},
        {"name": "Party", "expression": "Stickie cheers", "tags": "party", "prompt": "cheering"},
    ]
}


class ModelStickerWriter:
    """The pipeline's sticker list from the real parsing over a scripted model."""

    def __init__(self) -> None:
        self.model = ScriptedModel.of(default=json.dumps(LIST))

    async def list_stickers(
        self, character: Character, idea: Idea, *, style: str, count: int
    ) -> list[tuple[Sticker, str]]:
        return await write_stickers(
            idea.prompt, model=self.model, character=idea.subject, count=count
        )


@pytest.fixture
async def discord() -> AsyncIterator[fd.FakeDiscord]:
    async with fd.FakeDiscord() as fake:
        yield fake


def sticker_world(
    project: Path,
    store: SqlStore,
    pool: ComfyPool,
    fake: fd.FakeDiscord | None,
    *,
    background: str = "key",
    animated: bool = False,
) -> World:
    text = STICKIE.replace("BACKGROUND", background).replace("ANIMATED", str(animated).lower())
    (project / "characters" / "stickie.yaml").write_text(text)
    world = World(project, store, pool)
    world.pipeline.sticker_writer = ModelStickerWriter()
    if fake is not None:
        api = DiscordStickers(
            token=SecretStr(fd.BOT_TOKEN), guild_id=fd.GUILD_ID, api_base=fake.api_base
        )
        world.pipeline.sticker_uploads = StickerUploader(api, store)
    return world


def uploaded(fake: fd.FakeDiscord) -> list[tuple[str, str, str]]:
    return [(s["name"], s["tags"], s["description"]) for s in fake.stickers.values()]


async def test_a_sticker_pack_is_drawn_keyed_cut_and_uploaded_with_the_models_names(
    project: Path,
    store: SqlStore,
    comfy: tuple[FakeComfyUI, ComfyPool],
    discord: fd.FakeDiscord,
) -> None:
    """One prompt per sticker; each file a 320x320 PNG whose plain background is transparent;
    all three uploaded to the guild with the name, tags and description the model wrote."""
    fake, pool = comfy
    world = sticker_world(project, store, pool, discord)
    run = await world.run(Job("stickie", seed=3))
    assert run.state is RunState.PUBLISHED, run.failure
    assert len(fake.prompts) == 3
    assert [s.name for s in run.stickers] == ["Wave", "Sleepy", "Party"]
    assert all(s.state is StickerState.UPLOADED for s in run.stickers)
    assert uploaded(discord) == [
        ("Wave", "wave, hi", "Stickie waves hello"),
        ("Sleepy", "sleepy", "Stickie yawns"),
        ("Party", "party", "Stickie cheers"),
    ]
    folder = world.folder(run)
    assert [m.path for m in run.media] == ["stickers/01.png", "stickers/02.png", "stickers/03.png"]
    with Image.open(folder / run.media[0].path) as sticker:
        assert sticker.size == (320, 320)
        rgba = sticker.convert("RGBA")
    assert rgba.getpixel((1, 1)) == (0, 0, 0, 0)
    assert rgba.getpixel((160, 160))[3] == 255  # type: ignore[index]
    # the prompt ComfyUI drew is the model's, for the sticker of that index
    texts = [json.dumps(p.prompt) for p in fake.prompts]
    assert sum("waving" in t for t in texts) == 1


async def test_comfyuis_background_removal_and_the_animated_variant(
    project: Path,
    store: SqlStore,
    comfy: tuple[FakeComfyUI, ComfyPool],
    discord: fd.FakeDiscord,
) -> None:
    """With background comfyui each drawing goes through the RMBG workflow (its transparency
    kept); animated stickers are APNGs, and Discord files them as such."""
    fake, pool = comfy
    world = sticker_world(project, store, pool, discord, background="comfyui", animated=True)
    run = await world.run(Job("stickie", seed=4))
    assert run.state is RunState.PUBLISHED, run.failure
    classes = [sorted(n["class_type"] for n in p.prompt.values()) for p in fake.prompts]
    assert sum("BRIA_RMBG_Zho" in c for c in classes) == 3
    assert len(fake.prompts) == 6
    with Image.open(world.folder(run) / "stickers" / "02.png") as sticker:
        assert getattr(sticker, "is_animated", False)
        assert sticker.convert("RGBA").getpixel((1, 1)) == (0, 0, 0, 0)
    assert [s["format_type"] for s in discord.stickers.values()] == [2, 2, 2]


async def test_a_run_killed_after_some_stickers_were_made_makes_only_the_rest(
    project: Path,
    store: SqlStore,
    comfy: tuple[FakeComfyUI, ComfyPool],
) -> None:
    """As if the process died after the first sticker: on resume, the finished sticker's file
    is kept as it was and only the others' prompts go to ComfyUI."""
    fake, pool = comfy
    world = sticker_world(project, store, pool, None)
    run = await world.run(Job("stickie", seed=5, publish=False))
    assert run.state is RunState.APPROVED, run.failure
    folder = world.folder(run)
    first = (folder / "stickers" / "01.png").stat()
    for index in (1, 2):
        shutil.rmtree(folder / f"main-d{index}")
        (folder / "stickers" / f"{index + 1:02d}.png").unlink()
    fake.history.clear()
    before = len(fake.prompts)
    again = await world.pipeline.execute(run.advance(RunState.DESCRIBED, media=()))
    assert again.state is RunState.APPROVED
    assert len(fake.prompts) - before == 2
    assert (folder / "stickers" / "01.png").stat().st_mtime_ns == first.st_mtime_ns
    assert all((folder / m.path).is_file() for m in again.media)


async def test_a_run_killed_mid_upload_resumes_without_uploading_twice(
    project: Path,
    store: SqlStore,
    comfy: tuple[FakeComfyUI, ComfyPool],
    discord: fd.FakeDiscord,
) -> None:
    """Killed while Discord made the second sticker and its answer was on the way: resumed,
    the run finds that sticker in the guild, uploads the third only, draws nothing again."""
    fake, pool = comfy
    world = sticker_world(project, store, pool, discord)
    discord.sticker_answers_left = 1
    run = Run.new(Job("stickie", seed=6))
    await store.save_run(run)
    task = asyncio.create_task(world.pipeline.execute(run, RecordingSink()))
    await until(lambda: discord.sticker_answers_held == 1, what="the second upload held")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    discord.stickers_released.set()
    discord.sticker_answers_left = None
    saved = await store.load_run(run.id)
    assert saved is not None
    assert saved.state is RunState.PUBLISHING
    prompts = len(fake.prompts)
    done = await world.pipeline.execute(saved)
    assert done.state is RunState.PUBLISHED, done.failure
    assert discord.sticker_uploads == 3
    assert [name for name, _, _ in uploaded(discord)] == ["Wave", "Sleepy", "Party"]
    assert len(fake.prompts) == prompts


async def test_a_pack_over_the_guilds_slots_fails_at_publishing_naming_what_did_not_fit(
    project: Path,
    store: SqlStore,
    comfy: tuple[FakeComfyUI, ComfyPool],
    discord: fd.FakeDiscord,
) -> None:
    """4 of 5 slots taken: one sticker goes up; the run fails at publishing naming the two
    others and why, and a retry after a boost uploads just those."""
    _, pool = comfy
    for number in range(4):
        discord.stickers[number + 1] = {"id": str(number + 1), "name": f"old{number}", "tags": "x"}
    world = sticker_world(project, store, pool, discord)
    run = await world.run(Job("stickie", seed=7))
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.doing == "publish"
    assert "sticker Sleepy (no free sticker slot in the guild (all 5 used" in run.failure.message
    assert "sticker Party" in run.failure.message
    assert discord.sticker_uploads == 1
    discord.premium_tier = 1
    done = await world.pipeline.execute(run)
    assert done.state is RunState.PUBLISHED
    assert discord.sticker_uploads == 3


async def test_without_a_token_or_guild_a_pack_stops_at_publishing_saying_what_to_set(
    project: Path, store: SqlStore, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """The command line without DISCORD_TOKEN / DISCORD_STICKER_GUILD_ID: the pack is made
    and approved, then the run fails at publishing with the settings named (a retry once they
    are set resumes there); --no-publish stops at approved."""
    _, pool = comfy
    world = sticker_world(project, store, pool, None)
    run = await world.run(Job("stickie", seed=8))
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert "DISCORD_STICKER_GUILD_ID" in run.failure.message
    assert run.failure.doing == "publish"
    kept = await world.run(Job("stickie", seed=8, publish=False))
    assert kept.state is RunState.APPROVED


async def test_with_a_platform_enabled_the_chosen_stickers_are_also_posted_there(
    project: Path,
    store: SqlStore,
    comfy: tuple[FakeComfyUI, ComfyPool],
    discord: fd.FakeDiscord,
) -> None:
    """The optional post: a sticker character with X enabled posts the chosen stickers there
    as one post (X keeps their transparency as PNG), once, beside the upload to the guild."""
    _, pool = comfy
    world = sticker_world(project, store, pool, discord)
    path = project / "characters" / "stickie.yaml"
    path.write_text(
        path.read_text()
        + "social_media:\n  platforms:\n    twitter: {enabled: true, credentials: stickie_x}\n"
    )
    world.reviewer.decide = lambda run: Decision(
        approved=True, selected=(0, 2), by="alice", at=utcnow()
    )
    run = await world.run(Job("stickie", seed=9))
    assert run.state is RunState.PUBLISHED, run.failure
    [(account, files, _)] = world.publishers[Platform.TWITTER].posted
    assert account == "stickie_x"
    assert len(files) == 2
    assert [s.state for s in run.stickers] == [
        StickerState.UPLOADED,
        StickerState.PENDING,
        StickerState.UPLOADED,
    ]
    assert [name for name, _, _ in uploaded(discord)] == ["Wave", "Party"]
