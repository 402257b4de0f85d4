"""Benchmark: how long does a language-model client's first call hold the event loop?

A client library's first request builds its request and response types; done on the event loop,
that stalls every other run for as long. `open_models` (what the bot and the command line use)
builds the clients in a thread and warms each one up there. For each provider this starts a fresh
interpreter (the cost is once per process), builds the models either way, and measures the
loop's longest stall during one vision call with a JSON schema against the provider's fake.
Goal: every warmed first call stalls the loop under 10 ms, like any later call.

    python benchmarks/first_call.py [--repeats 3] [--providers ollama openrouter gemini]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_overhead import LagSampler  # noqa: E402  (needs the path set above)
from pipeline.llm.base import ModelRequest  # noqa: E402
from pipeline.llm.factory import build_models, open_models  # noqa: E402
from pipeline.ports import ImageData  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from tests.fakes.gemini import FakeGemini  # noqa: E402
from tests.fakes.llm_server import LlmFake  # noqa: E402
from tests.fakes.ollama import FakeOllama  # noqa: E402
from tests.fakes.openai_api import FakeOpenAI  # noqa: E402

PROVIDERS = ("ollama", "openrouter", "gemini")
MODES = ("warmed", "cold")
KEY = "bench-key"


def _fake(provider: str) -> LlmFake:
    fake: LlmFake = {"ollama": FakeOllama, "openrouter": FakeOpenAI, "gemini": FakeGemini}[
        provider
    ](api_key=None if provider == "ollama" else KEY)
    fake.respond_with(lambda _: json.dumps({"score": 0.8, "reason": "a fox"}))
    return fake


def _settings(provider: str, url: str, data: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data,
        ollama_host=url if provider == "ollama" else "http://127.0.0.1:9",
        openrouter_base_url=url if provider == "openrouter" else "http://127.0.0.1:9/v1",
        openrouter_api_key=KEY if provider == "openrouter" else None,
        gemini_base_url=url if provider == "gemini" else "",
        gemini_api_key=KEY if provider == "gemini" else None,
    )


async def child(provider: str, mode: str) -> float:
    """The loop's longest stall (ms) during `provider`'s first call, built as `mode` says."""
    with tempfile.TemporaryDirectory() as tmp:
        async with _fake(provider) as fake:
            settings = _settings(provider, fake.url, Path(tmp))
            if mode == "warmed":
                async with open_models(settings) as models:
                    return await _first_call(models.providers[provider])
            models = await asyncio.to_thread(build_models, settings)
            try:
                return await _first_call(models.providers[provider])
            finally:
                await models.aclose()


async def _first_call(provider: object) -> float:
    request = ModelRequest(
        model="bench",
        system="Score the image against its description.",
        prompt="a small orange fox in a blue scarf",
        images=(ImageData(b"\xff\xd8\xff\xe0bench", "image/jpeg"),),
        schema={"type": "object", "properties": {"score": {"type": "number"}}},
    )
    generate = provider.generate  # type: ignore[attr-defined]
    async with LagSampler(0.001) as lag:
        await asyncio.sleep(0.01)  # the sampler's own first wake-ups
        await generate(request)
    return max(lag.lags_ms)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS), metavar="NAME"
    )
    parser.add_argument("--child", nargs=2, metavar=("PROVIDER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(*args.child))))
        return
    figures: dict[str, float] = {}
    print(f"first call's longest event-loop stall, median of {args.repeats} fresh processes")
    for provider in args.providers:
        for mode in MODES:
            stalls = [
                float(
                    subprocess.run(
                        [sys.executable, __file__, "--child", provider, mode],
                        check=True,
                        capture_output=True,
                        text=True,
                        cwd=ROOT,
                    ).stdout.strip()
                )
                for _ in range(args.repeats)
            ]
            figures[f"{mode}_stall_ms_{provider}"] = statistics.median(stalls)
            print(f"  {provider:<10} {mode:<6} {statistics.median(stalls):7.1f} ms  {stalls}")
    print(" ".join(f"{key}={value:.1f}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
