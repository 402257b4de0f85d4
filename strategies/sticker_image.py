"""Discord's sticker format from a generated image (Pillow; blocking, call it in a thread).

A plain background is keyed out by a flood fill from the borders (linear in the pixels), the
subject is trimmed and centred on a 320x320 canvas, and the file is saved as PNG (or APNG for
a moving sticker) under 512 KB, fewer colours each time it does not fit. Never imports
`pipeline`; a refusal is a `StrategyError` naming the sticker.
"""

from __future__ import annotations

from collections import Counter, deque
from pathlib import Path

from PIL import Image, ImageChops

from strategies.base import StrategyError

#: Discord's sticker file: 320x320, at most 512 KB (discord.com/developers/docs/resources/sticker)
STICKER_SIDE = 320
STICKER_BYTES = 512 * 1024
#: the subject's margin inside the canvas, in pixels
MARGIN = 8
#: keying works on the image scaled to at most this side (the result is 320 anyway)
KEY_SIDE = 640
#: the colour counts tried, in order, when a file is over the size limit
PALETTES = (None, 256, 128, 64, 32, 16)
#: the animated variant: a small hop, frame by frame (pixels up), 80 ms a frame
HOP = (0, 2, 5, 7, 8, 7, 5, 2)
FRAME_MS = 80


def key_out(image: Image.Image, tolerance: int) -> Image.Image:
    """`image` as RGBA with its plain background made transparent: every pixel joined to the
    border through pixels within `tolerance` of the border's most common colour."""
    rgb = image.convert("RGB")
    rgb.thumbnail((KEY_SIDE, KEY_SIDE))
    width, height = rgb.size
    background = _border_colour(rgb)
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, background))
    red, green, blue = diff.split()
    distance = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    near = distance.point(lambda v: 255 if v <= tolerance else 0).tobytes()
    alpha = bytearray(b"\xff" * (width * height))
    todo: deque[int] = deque()
    for x in range(width):
        todo.extend((x, (height - 1) * width + x))
    for y in range(height):
        todo.extend((y * width, y * width + width - 1))
    while todo:  # each pixel is made transparent once and looked at from four sides at most
        at = todo.pop()
        if not alpha[at] or not near[at]:
            continue
        alpha[at] = 0
        x = at % width
        if x > 0:
            todo.append(at - 1)
        if x < width - 1:
            todo.append(at + 1)
        if at >= width:
            todo.append(at - width)
        if at < (height - 1) * width:
            todo.append(at + width)
    keyed = rgb.convert("RGBA")
    keyed.putalpha(Image.frombytes("L", rgb.size, bytes(alpha)))
    return keyed


def _border_colour(image: Image.Image) -> tuple[int, int, int]:
    width, height = image.size
    points = [(x, 0) for x in range(width)] + [(x, height - 1) for x in range(width)]
    points += [(0, y) for y in range(height)] + [(width - 1, y) for y in range(height)]
    counts: Counter[tuple[int, int, int]] = Counter()
    for point in points:
        pixel = image.getpixel(point)
        assert isinstance(pixel, tuple)
        counts[(pixel[0], pixel[1], pixel[2])] += 1
    return counts.most_common(1)[0][0]


def fit_canvas(image: Image.Image, what: str) -> Image.Image:
    """The subject of an RGBA `image` (its visible part) scaled to fit, centred on a
    transparent 320x320 canvas. Refuses an image with nothing visible left."""
    rgba = image.convert("RGBA")
    box = rgba.getchannel("A").getbbox()
    if box is None:
        raise StrategyError(f"{what}: nothing is left once the background is removed")
    subject = rgba.crop(box)
    inner = STICKER_SIDE - 2 * MARGIN
    scale = min(inner / subject.width, inner / subject.height)
    size = (max(1, round(subject.width * scale)), max(1, round(subject.height * scale)))
    subject = subject.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (STICKER_SIDE, STICKER_SIDE), (0, 0, 0, 0))
    canvas.alpha_composite(subject, ((STICKER_SIDE - size[0]) // 2, (STICKER_SIDE - size[1]) // 2))
    return canvas


def _frames(still: Image.Image) -> list[Image.Image]:
    frames = []
    for up in HOP:
        frame = Image.new("RGBA", still.size, (0, 0, 0, 0))
        frame.paste(still, (0, -up), still)
        frames.append(frame)
    return frames


def _reduced(image: Image.Image, colours: int | None) -> Image.Image:
    if colours is None:
        return image
    return image.quantize(colours, method=Image.Quantize.FASTOCTREE)


def save_sticker(
    image: Image.Image,
    target: Path,
    *,
    what: str,
    animated: bool = False,
    limit: int = STICKER_BYTES,
) -> Path:
    """Save a 320x320 RGBA sticker to `target` (.png) under `limit` bytes, with fewer colours
    until it fits; written beside and moved into place, so a file there is always whole.
    Refuses, naming `what`, when even the fewest colours do not fit."""
    partial = target.with_name(target.name + ".partial")
    for colours in PALETTES:
        if animated:
            frames = [_reduced(frame, colours) for frame in _frames(image)]
            frames[0].save(
                partial,
                format="PNG",
                save_all=True,
                append_images=frames[1:],
                duration=FRAME_MS,
                loop=0,
                disposal=1,
                blend=0,
                optimize=True,
            )
        else:
            _reduced(image, colours).save(partial, format="PNG", optimize=True)
        if partial.stat().st_size <= limit:
            partial.replace(target)
            return target
    size = partial.stat().st_size
    partial.unlink()
    raise StrategyError(
        f"{what}: the sticker is {size // 1024} KB even with {PALETTES[-1]} colours; Discord "
        f"takes at most {limit // 1024} KB"
    )


def make_sticker(
    source: Path,
    target: Path,
    *,
    what: str,
    key: bool,
    tolerance: int = 40,
    animated: bool = False,
    limit: int = STICKER_BYTES,
) -> Path:
    """`source` (a generated image; with `key`, its plain background keyed out first, else
    its own transparency kept) as a sticker file at `target`."""
    try:
        with Image.open(source) as opened:
            opened.load()
            image = key_out(opened, tolerance) if key else opened.convert("RGBA")
    except (OSError, Image.DecompressionBombError) as exc:
        raise StrategyError(f"{what}: the generated image cannot be read") from exc
    return save_sticker(fit_canvas(image, what), target, what=what, animated=animated, limit=limit)
