"""Vision scoring: each image (or a few frames of each video) gets a score in [0, 1] and a
one-line reason against its description; the character's threshold filters, and when nothing
passes the best K are kept (or the run fails, when K is 0) and the outcome says so.

Images are read and downscaled in a thread, frames come from ffmpeg subprocesses (the graphs
and the bounded runner of `pipeline.publish.media`), and calls run concurrently under a
semaphore. Imports the ports, models, errors, `pipeline.tasks`, `pipeline.llm.parsing` and
`pipeline.publish.media`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import ExifTags, Image

from pipeline.errors import MediaOverloadError, ModelError, RunError
from pipeline.llm.parsing import (
    AnswerError,
    clean_model_text,
    clip,
    excerpt,
    extract_json,
    read_off_loop,
)
from pipeline.models import MediaItem, MediaKind
from pipeline.ports import ImageData, JsonSchema, VisionModel
from pipeline.publish.media import (
    MediaError,
    compile_graph,
    ffmpeg_binary,
    frames_graph,
    probe_video,
    run_ffmpeg,
    split_jpegs,
)
from pipeline.settings import Settings
from pipeline.tasks import gather_all

log = logging.getLogger(__name__)

VERDICT_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {"score": {"type": "number"}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}

SYSTEM = (
    "You judge generated images against the description they were made from. Give a score "
    "from 0 to 1: 1 when the image shows everything the description asks for and has no "
    "visible defects; 0 when it shows something else or is broken (garbled faces or hands, "
    "extra limbs, melted shapes, stray text). Give one short reason in one line. Answer with "
    'JSON only: {"score": 0.0, "reason": "..."}'
)

#: the most one video frame may take as the JPEG sent on (VISION_MAX_SIDE is at most 4096, and
#: a 4096x4096 frame of fine detail is about 8 MB at ffmpeg's q 3)
FRAME_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Verdict:
    """A score in [0, 1] and one line saying why."""

    score: float
    reason: str


@dataclass(frozen=True)
class ScoringOutcome:
    """The items with their scores and `kept` flags, and a sentence for people about it."""

    items: tuple[MediaItem, ...]
    threshold: float
    passed: int
    kept_best: bool
    note: str

    @property
    def kept(self) -> tuple[MediaItem, ...]:
        return tuple(item for item in self.items if item.kept)


def parse_verdict(answer: str) -> Verdict:
    """A Verdict from a model answer; scores on 0-10 or 0-100 scales are brought to 0-1; the
    reason is its first line, clean of control characters, at most 160 characters."""
    value = extract_json(answer)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict):
        raise AnswerError("the verdict is not a JSON object")
    raw = value.get("score")
    try:
        score = float(raw) if isinstance(raw, int | float | str) else float("nan")
    except ValueError:
        score = float("nan")
    if score != score:  # NaN: missing or not a number
        raise AnswerError(f"the verdict has no numeric score (got {excerpt(repr(raw), 40)})")
    if 1 < score <= 10:
        score /= 10
    elif 10 < score <= 100:
        score /= 100
    score = min(1.0, max(0.0, score))
    reason = value.get("reason")  # model text: shown in the run's summary
    lines = reason.lstrip()[:2000].splitlines() if isinstance(reason, str) else []
    line = clip(clean_model_text(lines[0]), 160) if lines else ""
    return Verdict(score=round(score, 3), reason=line or "no reason given")


#: EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def fitted_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` scaled down (never up) so that its longer side is at most `max_side`."""
    width, height = size
    longer = max(width, height)
    if longer <= max_side:
        return size
    return max(1, round(width * max_side / longer)), max(1, round(height * max_side / longer))


def encode_image(data: bytes | Path, *, max_side: int = 1024, quality: int = 85) -> ImageData:
    """A JPEG no larger than `max_side` on its longer side, upright as its EXIF says
    (blocking: call in a thread).

    One decode, at most one resize, one encode: a JPEG is decoded at 1/2, 1/4 or 1/8 of its
    size when that still covers `max_side` (`draft`), the PNGs ComfyUI saves by libpng
    (`_png_pixels`); the resize first reduces by whole factors (a box filter), then resamples
    bilinearly; the EXIF turn is made on the small image. The metadata (ComfyUI's PNGs carry
    the whole workflow) are not sent on.
    """
    raw = data if isinstance(data, bytes) else data.read_bytes()
    with Image.open(io.BytesIO(raw)) as opened:
        opened.draft("RGB", (max_side, max_side))  # JPEG only; other formats decode whole
        image = _png_pixels(opened, raw)
        turn = None
        if image is None:
            turn = _UPRIGHT.get(opened.getexif().get(ExifTags.Base.Orientation, 1))
            image = opened.convert("RGB") if opened.mode != "RGB" else opened
        size = fitted_size(image.size, max_side)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)
        if turn is not None:
            image = image.transpose(turn)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality)
    return ImageData(out.getvalue(), "image/jpeg")


#: the keys of a PNG's info that may turn it (EXIF, XMP): such a PNG is left to Pillow
_MAY_TURN = frozenset({"exif", "xmp", "XML:com.adobe.xmp"})


def _png_pixels(opened: Image.Image, raw: bytes) -> Image.Image | None:
    """The RGB pixels of a still RGB or RGBA PNG that carries no turn (as ComfyUI saves them),
    decoded by libpng through imagecodecs; None for any other file, which Pillow decodes.

    libpng unfilters rows with SIMD where Pillow goes a byte at a time, and imagecodecs lets
    the GIL go while it decodes: a 1024x1024 PNG takes about 14 ms of CPU against Pillow's
    21-24 ms. Pillow has already read the header: the format, the mode and the size's bomb
    check. Alpha (or a transparent colour) is dropped and 16 bits are cut to 8, as Pillow's
    `convert` does.
    """
    if (
        opened.format != "PNG"
        or opened.mode not in ("RGB", "RGBA")
        or getattr(opened, "is_animated", False)
        or not _MAY_TURN.isdisjoint(opened.info)
    ):
        return None
    from imagecodecs import PngError, png_decode  # with numpy: loaded when first scoring

    try:
        pixels = png_decode(raw)
    except PngError as exc:  # truncated or corrupted image data
        raise OSError(f"the PNG's image data cannot be decoded ({exc})") from exc
    if pixels.dtype.itemsize == 2:
        pixels = (pixels >> 8).astype("uint8")
    return Image.fromarray(pixels[..., :3])


def find_ffmpeg() -> str:
    """The ffmpeg binary publishing uses too (blocking on first call: call it in a thread)."""
    return ffmpeg_binary()


async def video_frames(
    path: Path,
    count: int,
    *,
    ffmpeg: str,
    max_side: int = 1024,
    timeout_s: float = 60.0,
    frame_limit: int = FRAME_BYTES,
) -> list[bytes]:
    """`count` frames spread over the video, as JPEGs no larger than `max_side` on their
    longer side, ready to send: read by one ffmpeg run after the probe, each within
    `timeout_s` seconds, the frames within `frame_limit` bytes each. A run that fails part-way
    still gives the frames it wrote."""
    try:
        info = await probe_video(path, binary=ffmpeg, timeout_s=timeout_s)
        duration = info.duration
        moments = [duration * (i + 0.5) / count for i in range(count)] if duration > 0 else [0.0]
        grab = compile_graph(frames_graph(path, moments, max_side), ffmpeg)
        result = await run_ffmpeg(
            grab, timeout_s=timeout_s, stdout_limit=frame_limit * len(moments), check=False
        )
    except MediaError as exc:  # no video stream, past the deadline, frames over the limit
        log.warning("cannot read frames of %s: %s", path.name, exc)
        raise RunError(f"no frame could be read from {path.name}") from exc
    frames = await asyncio.to_thread(split_jpegs, result.stdout)
    if not frames:
        said = result.stderr.strip().splitlines()[-1:] or ["nothing"]
        log.warning("no frame of %s (ffmpeg exit %d: %s)", path.name, result.returncode, said[0])
        raise RunError(f"no frame could be read from {path.name}")
    return frames


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as a container's cpuset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class VisionScorer:
    """Scores media with a VisionModel; one scorer's semaphore limits all its calls."""

    def __init__(
        self,
        model: VisionModel,
        *,
        concurrency: int = 4,
        max_side: int = 1024,
        jpeg_quality: int = 85,
        video_frames: int = 3,
        ffmpeg: str | None = None,
        attempts: int = 2,
    ) -> None:
        self.model = model
        self._limit = asyncio.Semaphore(concurrency)
        # Preparing is CPU work: more at once than there are cores only shares them, and the
        # files prepared ahead (for the calls after these) would slow the ones the model waits
        # for now; the semaphore's queue keeps them in order.
        self._preparing = asyncio.Semaphore(min(concurrency, usable_cores()))
        self.max_side = max_side
        self._quality = jpeg_quality
        self.video_frames = video_frames
        self._ffmpeg = ffmpeg
        self._attempts = attempts

    @classmethod
    def from_settings(cls, model: VisionModel, settings: Settings) -> VisionScorer:
        """A scorer with VISION_CONCURRENCY, VISION_MAX_SIDE and VISION_VIDEO_FRAMES."""
        return cls(
            model,
            concurrency=settings.vision_concurrency,
            max_side=settings.vision_max_side,
            video_frames=settings.vision_video_frames,
        )

    async def _images(self, path: Path, kind: MediaKind) -> list[ImageData]:
        if kind is MediaKind.VIDEO:
            if self._ffmpeg is None:
                self._ffmpeg = await asyncio.to_thread(find_ffmpeg)
            frames = await video_frames(
                path, self.video_frames, ffmpeg=self._ffmpeg, max_side=self.max_side
            )
            return [ImageData(frame, "image/jpeg") for frame in frames]
        image = await asyncio.to_thread(
            encode_image, path, max_side=self.max_side, quality=self._quality
        )
        return [image]

    async def score(
        self, path: Path, description: str, *, kind: MediaKind = MediaKind.IMAGE
    ) -> Verdict:
        """One file's verdict; raises ModelError when no model gives a readable one."""
        # Reading and downscaling have their own slots, so the next files are prepared while
        # the model looks at the current ones (and not all of them at once).
        async with self._preparing:
            try:
                images = await self._images(path, kind)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                # a missing, truncated or corrupted file (UnidentifiedImageError is an OSError;
                # ffmpeg's failures come as a RunError); PIL's text holds the full path: only
                # the name is shown
                log.warning("cannot read %s for scoring: %s", path.name, exc)
                raise RunError(
                    f"{path.name} could not be read for scoring ({type(exc).__name__})"
                ) from exc
        async with self._limit:
            prompt = f"Description: {description}"
            if kind is MediaKind.VIDEO:
                prompt += (
                    f"\nThese are {len(images)} frames of one short video, in order; "
                    "judge the video as a whole."
                )
            last: AnswerError | None = None
            for _ in range(self._attempts):
                try:
                    answer = await self.model.look(
                        system=SYSTEM, prompt=prompt, images=images, schema=VERDICT_SCHEMA
                    )
                except MediaOverloadError:
                    raise
                except Exception as exc:
                    # a provider's own failure (a socket, a client library's bug) is the vision
                    # model's failure for the run; foreign text may hold a URL with a key, so
                    # only the error's type is told
                    failed = type(exc).__name__
                    log.warning("the vision model failed on %s (%s)", path.name, failed)
                    raise ModelError(
                        f"the vision model failed on {path.name} ({failed})",
                        user_message="The vision model failed; the run can be retried.",
                    ) from exc
                try:
                    return await read_off_loop(parse_verdict, answer)
                except AnswerError as exc:
                    log.warning("unreadable verdict for %s: %s", path.name, exc)
                    last = exc
        raise ModelError(
            f"the vision answer for {path.name} could not be read: {last}",
            user_message="The vision model's scores could not be read; the run can be retried.",
        )

    async def _score_or_error(
        self, folder: Path, item: MediaItem, description: str
    ) -> Verdict | MediaOverloadError:
        try:
            return await self.score(folder / item.path, description, kind=item.kind)
        except MediaOverloadError as exc:  # the model's or the file's: this item is dropped
            return exc

    async def score_items(
        self,
        folder: Path,
        items: Sequence[MediaItem],
        descriptions: Sequence[str],
        *,
        threshold: float,
        keep_best: int = 1,
    ) -> ScoringOutcome:
        """Score every unscored item (paths relative to `folder`) and mark which are kept.

        Items already scored (a resumed run) keep their score. When none reaches `threshold`
        the best `keep_best` are kept; with `keep_best=0` that is a RunError. When some
        items cannot be scored (no model answered, the file is unreadable) they are dropped;
        when none can, the first such error (a ModelError or RunError) is raised.
        """
        todo = [i for i, item in enumerate(items) if item.score is None]
        results = await gather_all(
            self._score_or_error(
                folder,
                items[i],
                descriptions[items[i].description_index]
                if 0 <= items[i].description_index < len(descriptions)
                else "",
            )
            for i in todo
        )
        scored = list(items)
        failures: list[MediaOverloadError] = []
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, MediaOverloadError):
                failures.append(result)
                scored[i] = replace(scored[i], reason="could not be scored", kept=False)
            else:
                scored[i] = replace(scored[i], score=result.score, reason=result.reason)
        if (
            failures
            and len(failures) == len(todo)
            and not any(item.score is not None for item in scored)
        ):
            raise failures[0]
        return self._filter(scored, threshold=threshold, keep_best=keep_best, unscored=failures)

    def _filter(
        self,
        items: list[MediaItem],
        *,
        threshold: float,
        keep_best: int,
        unscored: Sequence[MediaOverloadError],
    ) -> ScoringOutcome:
        with_score = [(i, item) for i, item in enumerate(items) if item.score is not None]
        passed = {i for i, item in with_score if item.score is not None and item.score >= threshold}
        noun = "video" if any(item.kind is MediaKind.VIDEO for item in items) else "image"
        total = len(items)
        if passed:
            keep = passed
            note = f"{len(passed)} of {total} {noun}s reached the threshold {threshold:g}."
            kept_best = False
        else:
            ranked = sorted(with_score, key=lambda pair: -(pair[1].score or 0.0))
            best = ranked[: max(0, keep_best)]
            top = ranked[0][1].score if ranked else None
            if keep_best <= 0 or not best:
                shown = f" (best {top:.2f})" if top is not None else ""
                raise RunError(
                    f"none of the {total} {noun}s reached the threshold {threshold:g}{shown}"
                )
            keep = {i for i, _ in best}
            note = (
                f"None of the {total} {noun}s reached the threshold {threshold:g}; "
                f"kept the best {len(keep)} (top score {top:.2f})."
            )
            kept_best = True
        if unscored:
            note += f" {len(unscored)} could not be scored."
        final = tuple(replace(item, kept=i in keep) for i, item in enumerate(items))
        log.info("%s", note)
        return ScoringOutcome(
            items=final, threshold=threshold, passed=len(passed), kept_best=kept_best, note=note
        )
