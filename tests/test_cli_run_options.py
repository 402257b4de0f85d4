"""`python -m pipeline run` with its options (--image, --count, --negative, --style, --seed) as a
user runs it: a child process against the fake ComfyUI and a fake language model; what the
server received, and each wrong option as one line and exit 1 with nothing started."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.store import connect
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import LlmFake
from tests.images import gif, png, png_header
from tests.test_cli_run import ROOT, Cli, child_env, language_model, one_line

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CHARACTER = """
character: {name: Testy, description: a small orange fox}
generation:
  generation_type_weights: {text2img: 1}
  workflows:
    text2img: workflows/text2img.json
    image2image: workflows/image2image.json
  similarity_threshold: 0.5
  descriptions: 1
  prompt_method_weights: {arbitrary: 1}
  style_weights: {anime: 1, watercolor: 1}
social_media:
  platforms:
    twitter: {enabled: false, credentials: testy_x}
additional_params:
  general: {images_per_description: 1, images_per_input: 1, denoise: 0.5}
"""


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(job_seconds=0.05) as fake:
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[tuple[LlmFake, dict[str, str]]]:
    async with language_model("ollama") as found:
        yield found


@pytest.fixture
def cli(tmp_path: Path, comfy: FakeComfyUI, llm: tuple[LlmFake, dict[str, str]]) -> Cli:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "workflows", project / "workflows")
    (project / "characters").mkdir()
    (project / "characters" / "testy.yaml").write_text(CHARACTER)
    return Cli(project, child_env(COMFYUI_SERVERS=comfy.url, **llm[1]))


async def test_a_run_from_an_image_with_count_negative_and_style(
    cli: Cli, comfy: FakeComfyUI
) -> None:
    """--image starts image2image from that picture (uploaded as given, kept in the run's
    folder), --count 3 makes three of it, --negative and --style reach the prompt."""
    given = cli.project / "mine.png"
    given.write_bytes(png(48, 32, "blue"))
    code, out, err = await cli.run(
        "run", "--character", "testy", "--image", str(given), "--count", "3",
        "--negative", "hats", "--style", "watercolor", "--seed", "11",
        "--review", "auto", "--no-publish",
    )  # fmt: skip
    assert code == 0, out + err
    assert list(comfy.uploads.values()) == [given.read_bytes()]
    [received] = comfy.prompts
    by_title = {n.get("_meta", {}).get("title"): n["inputs"] for n in received.prompt.values()}
    assert by_title["Negative Prompt"]["text"] == "hats"
    assert by_title["Batch"]["amount"] == 3
    run_id = out.split("run ", 1)[1].split(":", 1)[0]
    store = await connect("", sqlite_path=cli.project / "data" / "mediaoverload.db")
    try:
        run = await store.load_run(run_id)
    finally:
        await store.close()
    assert run is not None
    assert run.choices is not None
    assert (run.choices.generation_type, run.choices.style, run.choices.seed) == (
        "image2image",
        "watercolor",
        11,
    )
    kept = cli.project / "output" / "testy" / run_id / "input" / "image.png"
    assert kept.read_bytes() == given.read_bytes()
    assert len(list((cli.project / "output" / "testy" / run_id).glob("main-i*/*.png"))) == 3


BAD = [
    ("not-an-image", ["--image", "IMAGE"], b"just text",
     "The file is not a readable image; send a PNG, JPEG or WebP file."),
    ("gif", ["--image", "IMAGE"], gif(),
     "The image must be PNG, JPEG or WebP; this file is GIF."),
    ("too-many-pixels", ["--image", "IMAGE"], png_header(8000, 6000),
     "The image is 8000x6000 pixels (48.0 megapixels); at most 40 megapixels are taken."),
    ("too-big", ["--image", "IMAGE"], png(40, 40).ljust(30 * 1024, b"\0"),
     "The image is 30 KB; at most 20 KB is taken."),
    ("no-such-file", ["--image", "missing.png"], None,
     "There is no image file at missing.png."),
    ("image-for-text2img", ["--image", "IMAGE", "--type", "text2img"], png(),
     "text2img does not start from an image; leave the image out or ask for image2image."),
    ("unknown-style", ["--style", "oils"], None,
     "testy has no style 'oils'; it has: anime, watercolor."),
    ("count-zero", ["--count", "0"], None, "The count must be between 1 and 8, not 0."),
    ("count-too-high", ["--count", "9"], None, "The count must be between 1 and 8, not 9."),
    ("count-not-a-number", ["--count", "many"], None,
     "python -m pipeline run: argument --count: invalid int value: 'many' "
     "(see python -m pipeline run --help)"),
    ("negative-control-character", ["--negative", "a\x07b"], None,
     "The negative prompt holds a control character (U+0007); write plain text."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "content", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
async def test_a_wrong_option_is_one_line_and_exit_1(
    cli: Cli,
    comfy: FakeComfyUI,
    llm: tuple[LlmFake, dict[str, str]],
    args: list[str],
    content: bytes | None,
    expected: str,
) -> None:
    """Each wrong option is one sentence on stderr, exit 1, no model asked, nothing queued."""
    if content is not None:
        (cli.project / "given.png").write_bytes(content)
    args = [str(cli.project / "given.png") if a == "IMAGE" else a for a in args]
    cli.env["INPUT_IMAGE_MAX_MB"] = "0.02"  # 20 KB: the padded PNG is over, the others under
    code, out, err = await cli.run("run", "--character", "testy", "--review", "auto", *args)
    assert (code, out) == (1, ""), err
    assert one_line(err) == expected
    assert (comfy.prompts, comfy.uploads, llm[0].requests) == ([], {}, [])
