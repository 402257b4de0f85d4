"""Discord's sticker format from a generated image: the background keyed out, 320x320, under
512 KB (fewer colours until it fits, else refused in a sentence), a moving APNG when asked."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from strategies.base import StrategyError
from strategies.sticker_image import STICKER_BYTES, STICKER_SIDE, make_sticker


def drawing(path: Path, size: tuple[int, int] = (512, 768), *, noisy: bool = False) -> Path:
    """A plain near-white background (with JPEG-like speckle) around a red figure whose
    middle is white as well: only white joined to the border is background."""
    image = Image.new("RGB", size, (250, 250, 250))
    rng = random.Random(4)
    for _ in range(400):  # speckle within the tolerance
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        image.putpixel((x, y), (238, 241, 236))
    draw = ImageDraw.Draw(image)
    draw.ellipse((150, 200, 360, 560), fill=(200, 30, 40))
    draw.ellipse((230, 330, 280, 420), fill=(250, 250, 250))  # an eye, white, inside
    if noisy:
        data = bytes(rng.getrandbits(8) for _ in range(210 * 360 * 3))
        image.paste(Image.frombytes("RGB", (210, 360), data), (150, 200))
    image.save(path)
    return path


def test_a_plain_background_is_keyed_out_and_the_subject_fills_the_sticker(
    tmp_path: Path,
) -> None:
    """The border's colour goes transparent, white inside the figure stays, and the figure is
    trimmed and centred on a 320x320 canvas."""
    out = make_sticker(
        drawing(tmp_path / "in.png"), tmp_path / "01.png", what="sticker 1", key=True
    )
    with Image.open(out) as sticker:
        assert sticker.format == "PNG"
        assert sticker.size == (STICKER_SIDE, STICKER_SIDE)
        rgba = sticker.convert("RGBA")
    assert rgba.getpixel((2, 2))[3] == 0  # type: ignore[index]
    assert rgba.getpixel((160, 160))[3] == 255  # type: ignore[index]
    eye = rgba.getpixel((160, 140))
    assert isinstance(eye, tuple)
    assert eye[3] == 255
    assert eye[0] > 200
    box = rgba.getchannel("A").getbbox()
    assert box is not None
    assert box[1] <= 10
    assert box[3] >= 310
    assert out.stat().st_size <= STICKER_BYTES


def test_an_image_with_its_own_transparency_keeps_it(tmp_path: Path) -> None:
    """Behind a background-removal workflow the image is RGBA already: nothing is keyed."""
    source = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(source).rectangle((100, 50, 200, 250), fill=(250, 250, 250, 255))
    source.save(tmp_path / "cut.png")
    out = make_sticker(tmp_path / "cut.png", tmp_path / "01.png", what="sticker 1", key=False)
    with Image.open(out) as sticker:
        rgba = sticker.convert("RGBA")
    assert rgba.getpixel((160, 160)) == (250, 250, 250, 255)
    assert rgba.getpixel((5, 160))[3] == 0  # type: ignore[index]


def test_a_file_over_the_limit_gets_fewer_colours_until_it_fits(tmp_path: Path) -> None:
    """A noisy sticker is too big as full colour; it is saved with a palette under the limit."""
    source = drawing(tmp_path / "in.png", noisy=True)
    out = make_sticker(source, tmp_path / "01.png", what="sticker 1", key=True, limit=60_000)
    assert out.stat().st_size <= 60_000
    with Image.open(out) as sticker:
        assert sticker.mode == "P"


def test_a_sticker_that_cannot_fit_is_refused_in_a_sentence(tmp_path: Path) -> None:
    """Even the fewest colours over the limit: refused, naming the sticker; no file left."""
    source = drawing(tmp_path / "in.png", noisy=True)
    with pytest.raises(StrategyError, match=r"^sticker 3: the sticker is \d+ KB .* at most 1 KB"):
        make_sticker(source, tmp_path / "03.png", what="sticker 3", key=True, limit=1024)
    assert list(tmp_path.iterdir()) == [source]


def test_an_image_of_one_colour_leaves_nothing_and_is_refused(tmp_path: Path) -> None:
    Image.new("RGB", (64, 64), "white").save(tmp_path / "in.png")
    with pytest.raises(StrategyError, match="sticker 2: nothing is left"):
        make_sticker(tmp_path / "in.png", tmp_path / "02.png", what="sticker 2", key=True)


def test_an_unreadable_image_is_refused_in_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(b"not a png")
    with pytest.raises(StrategyError, match="sticker 1: the generated image cannot be read"):
        make_sticker(tmp_path / "in.png", tmp_path / "01.png", what="sticker 1", key=True)


def test_the_animated_variant_is_an_apng_that_moves(tmp_path: Path) -> None:
    """An APNG of several frames, looping, 320x320, under the limit."""
    out = make_sticker(
        drawing(tmp_path / "in.png"), tmp_path / "01.png", what="sticker 1", key=True, animated=True
    )
    with Image.open(out) as sticker:
        assert sticker.format == "PNG"
        assert getattr(sticker, "is_animated", False)
        assert getattr(sticker, "n_frames", 1) > 1
        assert sticker.size == (STICKER_SIDE, STICKER_SIDE)
        first = sticker.convert("RGBA").getchannel("A").getbbox()
        sticker.seek(4)
        later = sticker.convert("RGBA").getchannel("A").getbbox()
    assert first is not None
    assert later is not None
    assert later[1] < first[1]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size <= STICKER_BYTES
