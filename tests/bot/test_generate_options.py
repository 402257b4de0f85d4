"""/generate's options (image, seed, count, negative, style) as a member uses them in the fake
Discord: the refusals each one private sentence before anything starts, the style choices as
they type, and a run from an attached image through the real pipeline to the fake ComfyUI."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.models import RunState
from tests.bot.conftest import StartBot
from tests.bot.world import World, running_bot
from tests.bot.world import world as world  # the fixture: every fake
from tests.fakes import discord as fd
from tests.images import gif, png, png_header

#: the world's fox, able to start from an image, with styles to choose from
FOX = """
character: {name: Fox, description: a small orange fox in a blue scarf}
generation:
  generation_type_weights: {text2img: 1}
  workflows:
    text2img: workflows/text2img.json
    image2image: workflows/image2image.json
  similarity_threshold: 0.5
  descriptions: 1
  prompt_method_weights: {arbitrary: 1}
  style_weights: {"": 1, watercolor: 1}
social_media:
  default_hashtags: ["#fox"]
  platforms:
    instagram: {enabled: false, credentials: fox_ig}
    twitter: {enabled: false, credentials: fox_x}
additional_params:
  general: {images_per_description: 1, images_per_input: 1, denoise: 0.5}
"""


REFUSALS = [
    ("wrong-type", {"image": ("notes.txt", b"hello", "text/plain", None)},
     "The image must be PNG, JPEG or WebP; this file is text/plain."),
    ("gif", {"image": ("a.gif", gif(), "image/gif", (8, 8))},
     "The image must be PNG, JPEG or WebP; this file is image/gif."),
    ("too-big", {"image": ("big.png", png(), "image/png", (48, 32), 21 * 1024 * 1024)},
     "The image is 21.0 MB; at most 20.0 MB is taken."),
    ("too-many-pixels", {"image": ("wide.png", png_header(9000, 5000), "image/png", (9000, 5000))},
     "The image is 9000x5000 pixels (45.0 megapixels); at most 40 megapixels are taken."),
    ("image-for-a-character-without-image-workflow",
     {"image": ("a.png", png(), "image/png", (48, 32))},
     "mascot has no workflow that starts from an image (image2image); leave the image out."),
    ("unknown-style", {"style": "oils"},
     "mascot has no style 'oils'; it has: 3d_render, pixel_art."),
    ("count-zero", {"count": 0}, "The count must be between 1 and 8, not 0."),
    ("count-too-high", {"count": 9}, "The count must be between 1 and 8, not 9."),
    ("negative-too-long", {"negative": "x" * 1001},
     "The negative prompt is 1001 characters long; at most 1000 are allowed."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "said"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
async def test_a_wrong_option_is_refused_privately_before_anything_starts(
    start_bot: StartBot, fake: fd.FakeDiscord, options: dict[str, Any], said: str
) -> None:
    """Each wrong option is one sentence only the asker sees; no run, no download."""
    under_test = await start_bot()
    values = dict(options)
    if "image" in values:
        name, data, kind, pixels, *size = values["image"]
        width, height = pixels or (None, None)
        values["image"] = fake.upload(
            name, data, kind, width=width, height=height, size=size[0] if size else None
        )
    interaction = await fake.slash("generate", character="mascot", **values)
    assert interaction.response is not None
    assert interaction.response["type"] == 4  # answered at once, not deferred
    reply = interaction.reply
    assert reply is not None
    assert (reply.ephemeral, reply.content) == (True, said)
    assert [m for m in fake.messages.values() if not m.ephemeral] == []
    assert await under_test.services.store.list_runs() == []
    assert fake.downloads == {}


async def test_the_style_option_offers_the_chosen_characters_styles(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """With mascot chosen, `style` offers mascot's named styles as the member types."""
    await start_bot()
    options = {o["name"]: o for o in fake.command("generate")["options"]}
    assert options["style"]["autocomplete"] is True
    assert options["image"]["type"] == 11  # an attachment
    choices = await fake.autocomplete("generate", "style", character="mascot", style="")
    assert [c["value"] for c in choices] == ["3d_render", "pixel_art"]
    typed = await fake.autocomplete("generate", "style", character="mascot", style="pix")
    assert [c["value"] for c in typed] == ["pixel_art"]


@pytest.mark.timeout(60)
async def test_a_run_from_an_attached_image_with_every_option(world: World) -> None:
    """/generate with an image, seed, count, negative and style: ComfyUI receives the image as
    attached, the negative text, three images in one batch; the run keeps the options."""
    (world.project / "characters" / "fox.yaml").write_text(FOX)
    given = png(48, 32, "blue")
    async with running_bot(world) as services:
        attachment = world.discord.upload("mine.png", given, "image/png", width=48, height=32)
        interaction = await world.discord.slash(
            "generate",
            character="fox",
            image=attachment,
            seed=42,
            count=3,
            negative="hats, umbrellas",
            style="watercolor",
        )
        assert interaction.response is not None
        assert interaction.response["type"] == 5  # deferred: the run card follows

        async def in_review() -> list[Any]:
            runs = await services.store.list_runs()
            return [r for r in runs if r.state is RunState.AWAITING_REVIEW]

        [run] = await world.discord.until(in_review, within=30, what="the run in review")
    assert world.discord.downloads == {attachment.id: 1}
    assert list(world.comfy.uploads.values()) == [given]
    [received] = world.comfy.prompts
    by_title = {n.get("_meta", {}).get("title"): n["inputs"] for n in received.prompt.values()}
    assert by_title["Negative Prompt"]["text"] == "hats, umbrellas"
    assert by_title["Batch"]["amount"] == 3
    assert len(run.media) == 3
    assert run.choices is not None
    assert (run.choices.generation_type, run.choices.style, run.choices.seed) == (
        "image2image",
        "watercolor",
        42,
    )
    assert (run.job.count, run.job.negative) == (3, "hats, umbrellas")
    [kept] = run.job.input_images
    assert kept.endswith(f"{run.id}/input/image.png")


@pytest.mark.timeout(60)
async def test_an_attachment_whose_file_is_no_image_is_said_in_the_reply(world: World) -> None:
    """An attachment Discord calls a PNG whose bytes are no image is found after the download:
    the reply says so in one sentence and no run starts."""
    (world.project / "characters" / "fox.yaml").write_text(FOX)
    async with running_bot(world) as services:
        attachment = world.discord.upload("fake.png", b"not a picture", "image/png")
        interaction = await world.discord.slash("generate", character="fox", image=attachment)
        said = "The file is not a readable image; send a PNG, JPEG or WebP file."
        await world.discord.until(
            lambda: interaction.reply is not None and interaction.reply.content == said,
            within=20,
            what="the refusal",
        )
        assert await services.store.list_runs() == []
    assert world.comfy.prompts == []
    assert list((world.project / "output" / "fox").glob("*")) == []  # no leftovers
