"""Vision scoring: scores and reasons, the threshold, keeping the best, videos, concurrency."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat, PngImagePlugin

from pipeline.errors import ModelError, RunError
from pipeline.llm import AnswerError, FallbackChain, Lane, Task
from pipeline.llm.ollama import OllamaProvider
from pipeline.models import MediaItem, MediaKind
from pipeline.ports import ImageData, JsonSchema
from pipeline.publish.media import split_jpegs
from pipeline.vision import VisionScorer, encode_image, find_ffmpeg, parse_verdict, video_frames
from pipeline.wiring import ModelScorer
from tests.doubles import Asked, ScriptedModel
from tests.fakes.llm_server import Recorded
from tests.fakes.ollama import FakeOllama
from tests.waiting import until

DESCRIPTIONS = ("a red fox in snow", "a blue bird on a branch")


def verdict(score: float, reason: str = "fits") -> str:
    return json.dumps({"score": score, "reason": reason})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six images larger than the vision limit (read only by the tests)."""
    path = tmp_path_factory.mktemp("images")
    for index, colour in enumerate(["red", "blue", "green", "white", "black", "gray"]):
        Image.new("RGB", (1300, 900), colour).save(path / f"img{index}.png", compress_level=1)
    return path


def items(count: int) -> list[MediaItem]:
    return [
        MediaItem(path=f"img{i}.png", kind=MediaKind.IMAGE, description_index=i % 2)
        for i in range(count)
    ]


def by_path(scores: dict[str, float]) -> ScriptedModel:
    """A model whose score depends on which description it was asked about."""

    def answer(asked: Asked) -> str:
        for text, score in scores.items():
            if text in asked.prompt:
                return verdict(score)
        return verdict(0.0)

    return ScriptedModel.of(default=answer)


async def test_scores_filter_by_threshold(folder: Path) -> None:
    """Images under the character's threshold are dropped; the others are kept with reasons."""
    model = by_path({"fox": 0.9, "bird": 0.3})
    outcome = await VisionScorer(model).score_items(
        folder, items(4), DESCRIPTIONS, threshold=0.6, keep_best=1
    )
    assert [item.kept for item in outcome.items] == [True, False, True, False]
    assert [item.score for item in outcome.items] == [0.9, 0.3, 0.9, 0.3]
    assert all(item.reason == "fits" for item in outcome.items)
    assert outcome.note == "2 of 4 images reached the threshold 0.6."
    assert not outcome.kept_best


async def test_none_pass_keeps_the_best(folder: Path) -> None:
    """When nothing reaches the threshold, the best one is kept and the note says so."""
    model = ScriptedModel.of(verdict(0.2), verdict(0.45), verdict(0.3))
    scorer = VisionScorer(model, concurrency=1)
    outcome = await scorer.score_items(folder, items(3), DESCRIPTIONS, threshold=0.8, keep_best=1)
    assert [item.kept for item in outcome.items] == [False, True, False]
    assert outcome.kept_best
    assert "kept the best 1 (top score 0.45)" in outcome.note


async def test_none_pass_and_keep_none_fails(folder: Path) -> None:
    """With keep_best_when_none_pass 0, a run where nothing passes fails with the best score."""
    model = ScriptedModel.of(default=verdict(0.1))
    with pytest.raises(RunError, match=r"none of the 2 images reached the threshold 0.5 \(best"):
        await VisionScorer(model).score_items(
            folder, items(2), DESCRIPTIONS, threshold=0.5, keep_best=0
        )


async def test_scoring_is_concurrent_under_the_limit(folder: Path) -> None:
    """Six images with a limit of three are scored three at a time."""
    model = ScriptedModel.of(default=verdict(0.9))
    model.gate = asyncio.Event()  # every call waits here until three are in flight
    scoring = asyncio.create_task(
        VisionScorer(model, concurrency=3).score_items(
            folder, items(6), DESCRIPTIONS, threshold=0.5
        )
    )
    await until(lambda: model.in_flight == 3)
    model.gate.set()
    await scoring
    assert model.most_in_flight == 3  # never more, over the whole scoring
    assert len(model.calls) == 6


async def test_images_are_downscaled_jpegs(folder: Path) -> None:
    """The model gets a JPEG no larger than the configured side, with the description."""
    model = ScriptedModel.of(verdict(0.9))
    await VisionScorer(model, max_side=512).score(folder / "img0.png", "a red fox")
    [asked] = model.calls
    with Image.open(io.BytesIO(asked.images[0].data)) as sent:
        assert sent.format == "JPEG"
        assert max(sent.size) == 512
    assert "a red fox" in asked.prompt


def _saved(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def _rgb(image: Image.Image, at: tuple[int, int]) -> tuple[int, int, int]:
    red, green, blue = image.convert("RGB").getpixel(at)  # type: ignore[misc]
    return red, green, blue


def _left_red(size: tuple[int, int]) -> Image.Image:
    """An image whose left half is red and right half blue (to see which way it is turned)."""
    image = Image.new("RGB", size, "blue")
    image.paste("red", (0, 0, size[0] // 2, size[1]))
    return image


@pytest.mark.parametrize(
    ("fmt", "size", "sent"),
    [
        ("JPEG", (4000, 3000), (1024, 768)),
        ("JPEG", (1536, 1024), (1024, 683)),
        ("PNG", (2048, 2048), (1024, 1024)),
        ("PNG", (1000, 600), (1000, 600)),
        ("WEBP", (3000, 1000), (1024, 341)),
    ],
    ids=["large-jpeg", "jpeg-by-1.5", "large-png", "small-png-kept-size", "wide-webp"],
)
def test_an_image_is_sent_within_the_side_keeping_its_shape(
    fmt: str, size: tuple[int, int], sent: tuple[int, int]
) -> None:
    """Whatever the format and size, the model gets a JPEG of the right shape, never larger
    than the side (a large JPEG is decoded at a reduced size on the way)."""
    data = encode_image(_saved(_left_red(size), fmt), max_side=1024)
    with Image.open(io.BytesIO(data.data)) as image:
        assert (image.format, image.size) == ("JPEG", sent)
        assert _rgb(image, (5, 5))[0] > 200  # still red on the left
    assert data.mime_type == "image/jpeg"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize(
    "orientation", [3, 6, 8], ids=["upside-down", "turned-right", "turned-left"]
)
def test_a_photo_turned_by_its_exif_reaches_the_model_upright(orientation: int, fmt: str) -> None:
    """A camera picture stored sideways with an EXIF orientation (a JPEG, or a PNG's eXIf
    chunk) is sent the way it is seen."""
    upright = _left_red((1600, 1200))
    stored = {3: 180, 6: 90, 8: 270}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode_image(_saved(upright.rotate(stored, expand=True), fmt, exif=exif))
    with Image.open(io.BytesIO(data.data)) as image:
        assert image.size == (1024, 768)
        assert _rgb(image, (5, 384))[0] > 200  # red on the left, as the camera saw it
        assert _rgb(image, (1018, 384))[2] > 200
        assert ImageOps.exif_transpose(image).size == image.size  # no turn left to make


def test_the_workflow_comfyui_writes_into_a_png_is_not_sent_to_the_model() -> None:
    """ComfyUI's PNGs carry the prompt and workflow as text: the model gets pixels only."""
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", '{"secret_marker": "the whole workflow"}')
    data = encode_image(_saved(_left_red((512, 512)), "PNG", pnginfo=info))
    assert b"secret_marker" not in data.data


@pytest.mark.parametrize(
    "mode", ["RGBA", "P", "L", "LA"], ids=["alpha", "palette", "grey", "grey-alpha"]
)
def test_a_transparent_or_grey_image_is_sent_as_rgb(mode: str) -> None:
    """Images with alpha, a palette or one grey channel reach the model as plain RGB JPEGs."""
    data = encode_image(_saved(_left_red((300, 200)).convert(mode), "PNG"))
    with Image.open(io.BytesIO(data.data)) as image:
        assert (image.mode, image.size) == ("RGB", (300, 200))


def _texture(size: tuple[int, int]) -> Image.Image:
    """Fine noise, a gradient and hard edges in three different channels: a decoder that
    swaps channels, skips a row or misreads a filter gives other pixels."""
    noise = Image.effect_noise(size, 40)
    gradient = Image.linear_gradient("L").resize(size)
    edges = Image.new("L", size, 30)
    edges.paste(220, (size[0] // 3, 0, size[0] // 2, size[1]))
    return Image.merge("RGB", (noise, gradient, edges))


def _png16(image: Image.Image) -> bytes:
    """`image` as a 16-bit RGB PNG (Pillow writes RGB PNGs in 8 bits only)."""
    from imagecodecs import png_encode

    pixels = np.asarray(image).astype(np.uint16) * 257 + 99  # low bytes that must be cut
    return bytes(png_encode(pixels))


@pytest.mark.parametrize(
    "stored",
    [
        lambda image: _saved(image, "PNG", compress_level=4),
        lambda image: _saved(image.convert("RGBA"), "PNG"),
        lambda image: _saved(image, "PNG", transparency=(30, 30, 30)),
        _png16,
    ],
    ids=["rgb-as-comfyui-saves-it", "rgba", "transparent-colour", "16-bit"],
)
def test_a_png_reaches_the_model_with_the_pixels_pillow_reads(
    stored: Callable[[Image.Image], bytes],
) -> None:
    """Whichever decoder reads a PNG, the model gets the very JPEG Pillow's own decode of it
    would give (alpha dropped, 16 bits cut to their high 8)."""
    png = stored(_texture((640, 480)))
    with Image.open(io.BytesIO(png)) as opened:
        expected = _saved(opened.convert("RGB"), "JPEG", quality=85)
    assert encode_image(png, quality=85).data == expected


async def test_a_png_cut_off_in_its_image_data_is_dropped_with_a_sentence(
    tmp_path: Path,
) -> None:
    """A PNG whose header reads but whose image data ends early cannot be scored: the run
    says which file, without the folder."""
    png = _saved(_texture((640, 480)), "PNG")
    (tmp_path / "img0.png").write_bytes(png[: len(png) // 2])
    with pytest.raises(RunError) as raised:
        await VisionScorer(ScriptedModel.of()).score_items(
            tmp_path, items(1), DESCRIPTIONS, threshold=0.5
        )
    assert raised.value.user_message == "img0.png could not be read for scoring (OSError)"


async def test_one_unscorable_image_is_dropped(folder: Path) -> None:
    """An image no model could score is dropped and counted; the others go on."""
    model = ScriptedModel.of(verdict(0.9), ModelError("down"), verdict(0.8))
    outcome = await VisionScorer(model, concurrency=1).score_items(
        folder, items(3), DESCRIPTIONS, threshold=0.5
    )
    assert [item.kept for item in outcome.items] == [True, False, True]
    assert outcome.items[1].reason == "could not be scored"
    assert outcome.note.endswith("1 could not be scored.")


async def test_no_image_scorable_raises(folder: Path) -> None:
    """When no image can be scored at all, the model error reaches the run."""
    model = ScriptedModel.of(default=ModelError("all providers down"))
    with pytest.raises(ModelError):
        await VisionScorer(model).score_items(folder, items(2), DESCRIPTIONS, threshold=0.5)


async def test_scored_items_are_not_scored_again(folder: Path) -> None:
    """A resumed run keeps the scores it already has."""
    done = [*items(2)]
    done[0] = MediaItem("img0.png", MediaKind.IMAGE, 0, score=0.95, reason="earlier")
    model = ScriptedModel.of(verdict(0.7))
    outcome = await VisionScorer(model).score_items(folder, done, DESCRIPTIONS, threshold=0.5)
    assert len(model.calls) == 1
    assert outcome.items[0].reason == "earlier"


async def test_unreadable_verdict_is_asked_again(folder: Path) -> None:
    """A verdict that is not JSON is asked for again."""
    model = ScriptedModel.of("looks great!", verdict(0.8, "red fox, snow, sharp"))
    result = await VisionScorer(model).score(folder / "img0.png", "a red fox")
    assert (result.score, result.reason) == (0.8, "red fox, snow, sharp")


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ('{"score": 8, "reason": "ok"}', 0.8),
        ('{"score": 85, "reason": "ok"}', 0.85),
        ('{"score": "0.7", "reason": "ok"}', 0.7),
        ('<think>hmm</think>{"score": -1, "reason": "ok"}', 0.0),
    ],
    ids=["ten-scale", "hundred-scale", "string", "negative"],
)
def test_scores_are_brought_to_unit_range(answer: str, score: float) -> None:
    """Scores on 0-10 or 0-100 scales, or as text, end up in [0, 1]."""
    assert parse_verdict(answer).score == score


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("red fox\x00, \x1b[31msnow\x1b[0m", "red fox, snow"),
        ("red fox\nthe rest is rambling", "red fox"),
        ("\u202ered\u202c fox\tin snow", "red fox in snow"),
        ("fox " * 250_000, ("fox " * 40).strip()),
        (None, "no reason given"),
    ],
    ids=["control", "first-line", "bidi-tab", "megabyte", "missing"],
)
def test_the_reason_is_one_clean_short_line(reason: object, shown: str) -> None:
    """The reason shown in the run's summary is the model's first line, clean of control
    characters, at most 160 characters."""
    answer = json.dumps({"score": 0.8, "reason": reason})
    assert parse_verdict(answer).reason == shown


@pytest.mark.parametrize(
    "answer",
    ["[" * 1_000_000, '{"score": ' + "9" * 1_000_000 + "}", '{"score": "' + "x" * 1_000_000 + '"}'],
    ids=["deep-nesting", "huge-number", "huge-string-score"],
)
def test_a_hostile_verdict_is_unreadable_in_one_sentence(answer: str) -> None:
    """A megabyte verdict with no usable score is an unreadable answer of one short line."""
    with pytest.raises(AnswerError) as raised:
        parse_verdict(answer)
    assert len(str(raised.value)) < 200


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(
        [
            find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
            "-i", "testsrc=duration=2:size=160x120:rate=10", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path


@pytest.mark.slow
async def test_video_is_scored_on_frames(video: Path) -> None:
    """A video is judged on a few frames spread over it, sent together."""
    model = ScriptedModel.of(verdict(0.75))
    scorer = VisionScorer(model, video_frames=3)
    item = MediaItem(path=video.name, kind=MediaKind.VIDEO, description_index=0)
    outcome = await scorer.score_items(
        video.parent, [item], ["a test pattern"], threshold=0.5, keep_best=1
    )
    assert outcome.items[0].score == 0.75
    sent = model.calls[0].images
    assert [(i.mime_type, Image.open(io.BytesIO(i.data)).size) for i in sent] == [
        ("image/jpeg", (160, 120))
    ] * 3
    assert len({i.data for i in sent}) == 3  # three moments, three pictures
    assert "3 frames" in model.calls[0].prompt
    assert outcome.note == "1 of 1 videos reached the threshold 0.5."


@pytest.mark.slow
async def test_video_frames_are_read_at_the_vision_size_in_their_order(video: Path) -> None:
    """The frames come from ffmpeg already fitted to VISION_MAX_SIDE, each the picture at its
    own moment (nearer it than the other moment's, JPEG's loss aside)."""
    ffmpeg = find_ffmpeg()
    frames = await video_frames(video, 2, ffmpeg=ffmpeg, max_side=80)
    assert [Image.open(io.BytesIO(f)).size for f in frames] == [(80, 60), (80, 60)]
    alone = []
    for moment in (0.5, 1.5):
        grab = [ffmpeg, "-v", "error", "-ss", f"{moment}", "-i", str(video), "-frames:v", "1",
                "-vf", "scale=80:60", "-f", "image2pipe", "-vcodec", "png", "pipe:1"]  # fmt: skip
        done = await asyncio.to_thread(subprocess.run, grab, capture_output=True, check=True)
        alone.append(done.stdout)
    distances = [[_difference(frame, picture) for picture in alone] for frame in frames]
    assert distances[0][0] < 4 < distances[0][1]
    assert distances[1][1] < 4 < distances[1][0]


def _difference(one: bytes, other: bytes) -> float:
    """The mean absolute difference of two pictures' grey levels (0..255)."""
    first, second = (Image.open(io.BytesIO(data)).convert("L") for data in (one, other))
    return float(ImageStat.Stat(ImageChops.difference(first, second)).mean[0])


def test_a_stream_of_jpegs_is_parted_where_each_one_ends() -> None:
    """ffmpeg writes the frames one after the other: they are parted where each ends, never at
    end-marker bytes inside a comment or in the scan (stuffed bytes, restart markers); a
    cut-short last one is left out, and what is no JPEG gives nothing."""
    noisy = Image.effect_noise((64, 48), 80).convert("RGB")
    first = _jpeg(noisy, comment=b"\xff\xd9\xff\xd8 in a comment", restart_marker_blocks=1)
    assert first.count(b"\xff\xd9") == 2  # the comment's and the real end
    assert b"\xff\x00" in first  # a stuffed byte in the scan
    assert b"\xff\xd0" in first  # a restart marker
    second = _jpeg(Image.new("RGB", (8, 8), "red"))
    assert split_jpegs(first + second + second[:-30]) == [first, second]
    assert split_jpegs(first[:-1]) == []
    assert split_jpegs(b"GIF89a") == []


def _jpeg(picture: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="JPEG", **options)
    return out.getvalue()


@pytest.mark.slow
async def test_a_frame_over_the_size_cap_is_never_read_whole(video: Path) -> None:
    """A video whose frames are larger than the cap cannot be scored, said in one sentence."""
    with pytest.raises(RunError) as raised:
        await video_frames(video, 2, ffmpeg=find_ffmpeg(), frame_limit=1000)
    assert raised.value.user_message == "no frame could be read from clip.mp4"


async def test_scoring_through_ollama(folder: Path) -> None:
    """Through the real Ollama client, each image reaches the vision model with its verdict."""

    def score(recorded: Recorded) -> str:
        return verdict(0.9 if "fox" in recorded.prompt else 0.2, "seen")

    async with FakeOllama() as fake:
        fake.respond_with(score)
        provider = OllamaProvider(fake.url, timeout_s=5)
        chain = FallbackChain(
            Task.VISION, [Lane(provider, dict.fromkeys(Task, "llava"))], timeout_s=5
        )
        outcome = await VisionScorer(chain).score_items(
            folder, items(2), DESCRIPTIONS, threshold=0.5
        )
        await provider.aclose()
    assert [item.kept for item in outcome.items] == [True, False]
    assert all(len(r.images) == 1 and r.images[0][:2] == b"\xff\xd8" for r in fake.requests)
    assert {r.model for r in fake.requests} == {"llava"}


def test_scorer_from_settings() -> None:
    """VISION_* settings shape the scorer."""
    from pipeline.settings import load_settings

    settings = load_settings(env_file=None, vision_concurrency=2, vision_video_frames=5)
    scorer = VisionScorer.from_settings(ScriptedModel(), settings)
    assert (scorer.video_frames, scorer.max_side) == (5, 1024)


def broken_copy(folder: Path, tmp_path: Path, *, broken: set[int], count: int) -> Path:
    """`count` of the shared images in a new folder, with the `broken` ones truncated."""
    for index in range(count):
        data = (folder / f"img{index}.png").read_bytes()
        (tmp_path / f"img{index}.png").write_bytes(data[:40] if index in broken else data)
    return tmp_path


async def test_a_corrupted_image_is_dropped_and_the_others_scored(
    folder: Path, tmp_path: Path
) -> None:
    """A generated file that cannot be read is left out as unscored; the others are kept."""
    media = broken_copy(folder, tmp_path, broken={1}, count=3)
    model = ScriptedModel.of(default=verdict(0.9))
    outcome = await VisionScorer(model).score_items(media, items(3), DESCRIPTIONS, threshold=0.5)
    assert [item.kept for item in outcome.items] == [True, False, True]
    assert outcome.note.endswith("1 could not be scored.")


async def test_only_corrupted_images_fail_with_a_sentence_naming_the_file(
    folder: Path, tmp_path: Path
) -> None:
    """When no file can be read the run fails saying which one, not with an unexpected error."""
    media = broken_copy(folder, tmp_path, broken={0}, count=1)
    with pytest.raises(RunError) as raised:
        await VisionScorer(ScriptedModel.of()).score_items(
            media, items(1), DESCRIPTIONS, threshold=0.5
        )
    assert (
        raised.value.user_message
        == "img0.png could not be read for scoring (UnidentifiedImageError)"
    )
    assert str(tmp_path) not in raised.value.user_message


async def test_a_vision_model_crash_drops_only_that_image(folder: Path) -> None:
    """A model client raising its own error (here an OSError) on one image leaves that image
    out as unscored; the others are scored."""

    def answer(asked: Asked) -> str:
        if "bird" in asked.prompt:
            raise OSError("connection reset")
        return verdict(0.9)

    outcome = await VisionScorer(ScriptedModel.of(default=answer)).score_items(
        folder, items(3), DESCRIPTIONS, threshold=0.5
    )
    assert [item.kept for item in outcome.items] == [True, False, True]


async def test_a_vision_model_crash_everywhere_fails_with_a_safe_sentence(folder: Path) -> None:
    """When the model client crashes on every image the step fails with the model's
    user-safe sentence, and the foreign text (which may hold a key) is not repeated."""

    def answer(asked: Asked) -> str:
        raise OSError("connection reset by https://vision.example/?key=sk-secret")

    with pytest.raises(ModelError) as raised:
        await VisionScorer(ScriptedModel.of(default=answer)).score_items(
            folder, items(3), DESCRIPTIONS, threshold=0.5
        )
    assert raised.value.user_message == "The vision model failed; the run can be retried."
    assert "sk-secret" not in str(raised.value)


class CrashThenHang:
    """A vision model that crashes on the fox and never answers about the bird."""

    def __init__(self) -> None:
        self.hung_call_cancelled = False
        #: the fox crashes only once the bird's call waits, so there is a call left to stop
        self.bird_waiting = asyncio.Event()

    async def look(
        self,
        *,
        system: str,
        prompt: str,
        images: Sequence[ImageData],
        schema: JsonSchema | None = None,
    ) -> str:
        if "fox" in prompt:
            await self.bird_waiting.wait()
            raise OSError("broken pipe")
        self.bird_waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.hung_call_cancelled = True
            raise
        return verdict(0.9)


async def test_strategy_scoring_fails_with_the_models_message_and_stops_the_rest(
    folder: Path,
) -> None:
    """A strategy's scoring call that crashes fails with the model's user-safe sentence, and
    the other calls are stopped rather than left running."""
    model = CrashThenHang()
    scorer = ModelScorer(VisionScorer(model))
    with pytest.raises(ModelError) as raised:
        await scorer.score([(folder / "img0.png", "a red fox"), (folder / "img1.png", "a bird")])
    assert raised.value.user_message == "The vision model failed; the run can be retried."
    assert model.hung_call_cancelled
