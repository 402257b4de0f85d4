"""Benchmark: how long does scoring N images take when each vision call takes a fixed time?

Scores N images through the real Ollama client and the fallback chain against the fake Ollama
server, which answers each call after `--latency` seconds, with at most `--limit` calls at once.
Prints the time against the sequential N x latency (goal: about N / limit x latency). Imports
pipeline and tests.fakes only.

    python benchmarks/vision_scoring.py [--images 16] [--latency 0.25] [--limit 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from pipeline.llm import FallbackChain, Lane, Task  # noqa: E402  (needs the path set above)
from pipeline.llm.ollama import OllamaProvider  # noqa: E402
from pipeline.models import MediaItem, MediaKind  # noqa: E402
from pipeline.vision import VisionScorer  # noqa: E402
from tests.fakes.llm_server import Recorded  # noqa: E402
from tests.fakes.ollama import FakeOllama  # noqa: E402


def _verdict(recorded: Recorded) -> str:
    return json.dumps({"score": 0.8, "reason": "matches the description"})


async def bench(images: int, latency: float, limit: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index in range(images):
            colour = (index * 37 % 256, index * 91 % 256, 128)
            Image.new("RGB", (1536, 1024), colour).save(folder / f"{index}.png", compress_level=1)
        items = [MediaItem(f"{i}.png", MediaKind.IMAGE, 0) for i in range(images)]
        async with FakeOllama() as fake:
            fake.respond_with(_verdict, delay=latency)
            provider = OllamaProvider(fake.url, timeout_s=30)
            chain = FallbackChain(
                Task.VISION, [Lane(provider, dict.fromkeys(Task, "vision"))], timeout_s=30
            )
            scorer = VisionScorer(chain, concurrency=limit)
            started = time.perf_counter()
            outcome = await scorer.score_items(
                folder, items, ["a test image"], threshold=0.5, keep_best=1
            )
            elapsed = time.perf_counter() - started
            await provider.aclose()
        assert len(outcome.kept) == images
        assert len(fake.requests) == images
    return elapsed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--limit", type=int, default=4)
    args = parser.parse_args(argv)
    scoring = asyncio.run(bench(args.images, args.latency, args.limit))
    sequential = args.images * args.latency
    ideal = -(-args.images // args.limit) * args.latency
    print(f"images={args.images} latency_s={args.latency:g} limit={args.limit}")
    print(f"ideal (ceil(N / limit) x latency): {ideal:.3f} s")
    print(f"overhead over ideal: {scoring - ideal:.3f} s ({(scoring / ideal - 1) * 100:.1f}%)")
    print(
        f"scoring_s={scoring:.3f} sequential_s={sequential:.3f} speedup={sequential / scoring:.2f}"
    )


if __name__ == "__main__":
    main()
