"""Benchmark: how long does scoring N images take when each vision call takes a fixed time, what
does preparing an image cost, and how much memory does the scorer take?

Scores N images (1024x1024 PNGs with photo-like detail, as ComfyUI saves them) through the real
Ollama client and the fallback chain against the fake Ollama server, which answers each call
after `--latency` seconds, with at most `--limit` calls at once. Prints the time against the
ideal ceil(N / limit) x latency (goal: within 15%) and the sequential N x latency; the CPU one
image's preparation takes (`encode_image`, the scorer's own, on the same files: goal under
20 ms), as a PNG and as a JPEG, beside Pillow's decode alone of the PNGs; and the peak memory
over the process's memory before scoring (sampled every 2 ms; the fake server runs in this
process and counts too; goal under 80 MB for 16 images). Imports pipeline and tests.fakes only.

    python benchmarks/vision_scoring.py [--images 16] [--latency 0.25] [--limit 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image, ImageFilter  # noqa: E402

from pipeline.llm import FallbackChain, Lane, Task  # noqa: E402  (needs the path set above)
from pipeline.llm.ollama import OllamaProvider  # noqa: E402
from pipeline.models import MediaItem, MediaKind  # noqa: E402
from pipeline.vision import VisionScorer, encode_image  # noqa: E402
from tests.fakes.llm_server import Recorded  # noqa: E402
from tests.fakes.ollama import FakeOllama  # noqa: E402

#: the side of the benchmark's images, and ComfyUI's SaveImage compression
SIDE = 1024
PNG_LEVEL = 4


@dataclass(frozen=True)
class Figures:
    scoring_s: float
    ideal_s: float
    sequential_s: float
    prep_png_ms: float
    prep_jpeg_ms: float
    png_decode_ms: float
    peak_mb: float

    @property
    def ratio_to_ideal(self) -> float:
        return self.scoring_s / self.ideal_s


def _verdict(recorded: Recorded) -> str:
    return json.dumps({"score": 0.8, "reason": "matches the description"})


def photo(index: int, side: int = SIDE) -> Image.Image:
    """An image with fine texture, smooth gradients and hard edges, different per index (a
    flat colour would decode and encode far faster than anything a model draws)."""
    texture = Image.effect_noise((side, side), 48).filter(ImageFilter.GaussianBlur(1.5))
    gradient = Image.linear_gradient("L").resize((side, side)).rotate(index * 37 % 360)
    shift = (index % 7) / 7
    fractal = Image.effect_mandelbrot((side, side), (-2 + shift, -1.5, 1 + shift, 1.5), 48)
    return Image.merge("RGB", (texture, gradient, fractal))


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:  # noqa: PTH123 (a /proc file)
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler:
    """A thread noting the process's largest RSS every `interval` seconds (the loop may be
    busy, and Pillow's buffers are outside tracemalloc's view)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def prep_cpu_ms(paths: Sequence[Path]) -> float:
    """The median CPU time of one image's preparation, in this thread (after one untimed
    call, so that Pillow's plugins are loaded)."""
    encode_image(paths[0])
    spent = []
    for path in paths:
        began = time.thread_time()
        encode_image(path)
        spent.append(time.thread_time() - began)
    return statistics.median(spent) * 1000


def decode_cpu_ms(paths: Sequence[Path]) -> float:
    """The median CPU time of Pillow's decode alone of each file: what a PNG's preparation
    cost before libpng decoded it (Pillow has no reduced-size decode for PNG)."""

    def decode(path: Path) -> None:
        with Image.open(path) as image:
            image.load()

    decode(paths[0])
    spent = []
    for path in paths:
        began = time.thread_time()
        decode(path)
        spent.append(time.thread_time() - began)
    return statistics.median(spent) * 1000


async def bench(images: int, latency: float, limit: int) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index in range(images):
            picture = photo(index)
            picture.save(folder / f"{index}.png", compress_level=PNG_LEVEL)
            picture.save(folder / f"{index}.jpg", quality=92)
        pngs = [folder / f"{i}.png" for i in range(images)]
        prep_png = prep_cpu_ms(pngs)
        png_decode = decode_cpu_ms(pngs)
        prep_jpeg = prep_cpu_ms([folder / f"{i}.jpg" for i in range(images)])
        items = [MediaItem(f"{i}.png", MediaKind.IMAGE, 0) for i in range(images)]
        async with FakeOllama() as fake:
            fake.respond_with(_verdict, delay=latency)
            provider = OllamaProvider(fake.url, timeout_s=30)
            chain = FallbackChain(
                Task.VISION, [Lane(provider, dict.fromkeys(Task, "vision"))], timeout_s=30
            )
            scorer = VisionScorer(chain, concurrency=limit)
            # one call first: the client's first request builds its types (not the scorer's)
            await scorer.score(pngs[0], "warm-up")
            fake.requests.clear()
            before = rss_mb()
            with PeakSampler() as memory:
                started = time.perf_counter()
                outcome = await scorer.score_items(
                    folder, items, ["a test image"], threshold=0.5, keep_best=1
                )
                elapsed = time.perf_counter() - started
            await provider.aclose()
        assert len(outcome.kept) == images
        assert len(fake.requests) == images
    return Figures(
        scoring_s=elapsed,
        ideal_s=math.ceil(images / limit) * latency,
        sequential_s=images * latency,
        prep_png_ms=prep_png,
        prep_jpeg_ms=prep_jpeg,
        png_decode_ms=png_decode,
        peak_mb=max(0.0, memory.peak - before),
    )


def main(argv: Sequence[str] | None = None) -> Figures:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--limit", type=int, default=4)
    args = parser.parse_args(argv)
    if args.images < 1 or args.limit < 1 or args.latency <= 0:
        parser.error("--images and --limit must be at least 1, --latency above 0")
    figures = asyncio.run(bench(args.images, args.latency, args.limit))
    over = figures.scoring_s - figures.ideal_s
    print(
        f"images={args.images} ({SIDE}x{SIDE} PNG) latency_s={args.latency:g} "
        f"limit={args.limit}; machine: {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        f"scoring {figures.scoring_s:.3f} s; ideal (ceil(N / limit) x latency) "
        f"{figures.ideal_s:.3f} s, over it {over:.3f} s ({(figures.ratio_to_ideal - 1) * 100:.1f}%"
        f", goal within 15%); sequential {figures.sequential_s:.3f} s "
        f"(speedup {figures.sequential_s / figures.scoring_s:.2f}x)"
    )
    print(
        f"preparation CPU per image (decode, one resize, one JPEG encode): "
        f"{figures.prep_png_ms:.1f} ms from PNG, {figures.prep_jpeg_ms:.1f} ms from JPEG "
        f"(goal under 20 ms); Pillow's decode alone of the PNG (which the preparation no longer "
        f"uses): {figures.png_decode_ms:.1f} ms"
    )
    print(f"memory while scoring: peak {figures.peak_mb:.1f} MB over the start (goal under 80 MB)")
    print(
        f"prep_cpu_ms_per_image={figures.prep_png_ms:.2f} "
        f"pillow_png_decode_cpu_ms={figures.png_decode_ms:.2f} peak_mb={figures.peak_mb:.1f} "
        f"ratio_to_ideal={figures.ratio_to_ideal:.3f}"
    )
    return figures


if __name__ == "__main__":
    main()
