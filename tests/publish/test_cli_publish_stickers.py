"""`python -m pipeline publish RUN_ID` of a sticker pack: the stickers not uploaded yet go to
the guild (the fake Discord), each printed; without a token or guild it says what to set."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from pipeline.__main__ import main
from pipeline.models import (
    Decision,
    Job,
    MediaItem,
    MediaKind,
    Run,
    RunFailure,
    RunState,
    Sticker,
    StickerState,
    utcnow,
)
from pipeline.store import connect
from tests.fakes import discord as fd

RUN_ID = "5717c4e75ac4"
CHARACTER = """character: {name: Stickie}
generation:
  generation_type_weights: {sticker_pack: 1}
  workflows: {sticker_pack: wf.json}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "characters").mkdir(parents=True)
    (root / "wf.json").write_text("{}")
    (root / "characters" / "stickie.yaml").write_text(CHARACTER)
    monkeypatch.chdir(root)
    for name in ("DATABASE_URL", "DISCORD_TOKEN", "DISCORD_GUILD_ID", "DISCORD_STICKER_GUILD_ID"):
        monkeypatch.delenv(name, raising=False)
    return root


async def store_run(project: Path, run: Run) -> None:
    store = await connect("", sqlite_path=project / "data" / "mediaoverload.db")
    try:
        await store.save_run(run)
    finally:
        await store.close()


async def load_run(project: Path) -> Run | None:
    store = await connect("", sqlite_path=project / "data" / "mediaoverload.db")
    try:
        return await store.load_run(RUN_ID)
    finally:
        await store.close()


def pack(project: Path) -> Run:
    """A pack of two whose first sticker is up and whose second found no free slot."""
    folder = project / "output" / "stickie" / RUN_ID / "stickers"
    folder.mkdir(parents=True)
    for n in (1, 2):
        Image.new("RGBA", (320, 320), (n * 90, 20, 20, 255)).save(folder / f"0{n}.png")
    media = tuple(MediaItem(f"stickers/0{n + 1}.png", MediaKind.IMAGE, n) for n in range(2))
    stickers = (
        Sticker("Wave", "wave", "waves", StickerState.UPLOADED, sticker_id="77"),
        Sticker("Nap", "nap", "naps", StickerState.REFUSED, error="no free sticker slot"),
    )
    return Run.new(Job("stickie"), run_id=RUN_ID).advance(
        RunState.FAILED,
        media=media,
        stickers=stickers,
        decision=Decision(approved=True, selected=(0, 1), by="alice", at=utcnow()),
        failure=RunFailure(RunState.PUBLISHING, "not posted: sticker Nap"),
    )


async def test_publish_uploads_the_stickers_left_and_prints_each(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fd.FakeDiscord() as fake:
        fake.stickers[77] = {"id": "77", "name": "Wave", "tags": "wave", "description": "waves"}
        monkeypatch.setenv("DISCORD_TOKEN", fd.BOT_TOKEN)
        monkeypatch.setenv("DISCORD_API_BASE", fake.api_base)
        monkeypatch.setenv("DISCORD_STICKER_GUILD_ID", str(fd.GUILD_ID))
        await store_run(project, pack(project))
        code = await asyncio.to_thread(main, ["publish", RUN_ID])
        out = capsys.readouterr().out.splitlines()
        assert code == 0, out
        assert out == [
            "sticker Wave: uploaded",
            "sticker Nap: uploaded",
            f"run {RUN_ID}: published",
        ]
        assert fake.sticker_uploads == 1
        run = await load_run(project)
        assert run is not None
        assert run.state is RunState.PUBLISHED


async def test_publish_of_a_pack_without_a_token_says_what_to_set(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await store_run(project, pack(project))
    code = await asyncio.to_thread(main, ["publish", RUN_ID])
    assert code == 1
    assert "set DISCORD_TOKEN and DISCORD_STICKER_GUILD_ID" in capsys.readouterr().err
