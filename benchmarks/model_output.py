"""Benchmark: how long does a hostile model answer hold a run, and the event loop?

Feeds answers of `--size-kb` (default 1 MB) of four kinds (prose, broken JSON, deep nesting, 500
hashtags in the text and the list) through the real code paths: the fallback chain (which reads
a JSON answer before it accepts it), the prompt method, the descriptions, the captions for
Instagram and X, and the vision scorer, each answering every call with that text from an
in-process provider. A sampler notes how late the event loop wakes while they run. Prints each
step's time and outcome, and the loop's lag (goal: never over 50 ms; the issue saw 386 s for one
caption). Imports pipeline and tests.doubles only.

    python benchmarks/model_output.py [--size-kb 1024] [--repeats 3] [--lag-interval 0.005]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from random import Random

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from benchmarks.pipeline_overhead import LagSampler  # noqa: E402  (needs the path set above)
from pipeline.captions import load_counter, write_captions  # noqa: E402
from pipeline.characters import Character, Characters  # noqa: E402
from pipeline.errors import MediaOverloadError  # noqa: E402
from pipeline.llm import FallbackChain, Lane, ModelRequest, RetryPolicy, Task  # noqa: E402
from pipeline.llm.base import JsonMode  # noqa: E402
from pipeline.prompts.descriptions import write_descriptions  # noqa: E402
from pipeline.prompts.library import TemplateLibrary  # noqa: E402
from pipeline.prompts.methods import write_prompt  # noqa: E402
from pipeline.store import connect  # noqa: E402
from pipeline.vision import VisionScorer  # noqa: E402

KINDS = ("prose", "broken_json", "deep_nesting", "hashtags_500")
SENTENCE = "The little fox walked along the frozen river and counted every star above the hills. "

CHARACTER = """
character: {name: Fox, description: a small orange fox}
generation:
  generation_type_weights: {text2img: 1}
  workflows: {text2img: workflows/text2img.json}
social_media:
  default_hashtags: ["#fox", "#aiart"]
  platforms:
    instagram: {enabled: true, credentials: ig, prefix: "[Fox]"}
    twitter: {enabled: true, credentials: x}
"""


def answer(kind: str, size: int) -> str:
    """An answer of about `size` characters of one hostile kind."""
    if kind == "prose":
        return (SENTENCE * (size // len(SENTENCE) + 1))[:size]
    if kind == "broken_json":  # a long answer cut short, brackets inside and outside strings
        item = '{"description": "a fox [in] the {snow}", "tags": ["#fox", {"x": [1, 2,]}]}, '
        return ('{"descriptions": [' + item * (size // len(item) + 1))[:size]
    if kind == "deep_nesting":
        return "[" * size
    tags = [f"#tag{i}" for i in range(500)]
    inline = " ".join(f"fox{i} {tag}" for i, tag in enumerate(tags))
    prose = SENTENCE * max(1, (size - len(inline) * 2) // len(SENTENCE))
    return json.dumps({"text": f"{inline} {prose}", "hashtags": tags})


class ScriptedProvider:
    """A Provider answering every request with the same text, at once."""

    name = "scripted"

    def __init__(self, text: str) -> None:
        self.text = text

    async def generate(self, request: ModelRequest) -> str:
        return self.text

    async def ping(self) -> None:
        return None

    def json_mode(self, model: str) -> JsonMode:
        return JsonMode.SCHEMA

    async def aclose(self) -> None:
        return None


@dataclass
class Step:
    kind: str
    step: str
    started: float
    ended: float
    outcome: str
    #: the longest the loop woke late while this step ran
    lag_ms: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


async def timed(kind: str, step: str, work: Callable[[], Awaitable[str]]) -> Step:
    started = time.perf_counter()
    try:
        outcome = await work()
    except MediaOverloadError as exc:
        outcome = f"{type(exc).__name__}: {exc.user_message}"
    return Step(kind, step, started, time.perf_counter(), outcome)


async def idle(seconds: float, lag_interval: float) -> LagSampler:
    """The loop's lag with nothing to do: what the machine's load alone costs (on a shared
    machine, a process waits for a core however little it does)."""
    async with LagSampler(lag_interval) as lag:
        await asyncio.sleep(seconds)
    return lag


async def bench(
    size: int, repeats: int, lag_interval: float
) -> tuple[list[Step], LagSampler, LagSampler]:
    await asyncio.to_thread(load_counter)
    library = TemplateLibrary.load()
    character: Character = Characters(ROOT / "characters", library, root=ROOT).parse(
        CHARACTER, path=ROOT / "characters" / "fox.yaml"
    )
    steps: list[Step] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        Image.new("RGB", (64, 64), (200, 90, 20)).save(folder / "fox.png")
        store = await connect(f"sqlite:///{folder / 'store.db'}", sqlite_path=folder / "x.db")
        texts = {kind: answer(kind, size) for kind in KINDS}
        try:
            async with LagSampler(lag_interval) as lag:
                for kind in [kind for _ in range(repeats) for kind in KINDS]:

                    def chain(task: Task, text: str = texts[kind]) -> FallbackChain:
                        lane = Lane(ScriptedProvider(text), dict.fromkeys(Task, "m"))
                        return FallbackChain(task, [lane], policy=RetryPolicy(attempts=1))

                    async def prompt() -> str:
                        written = await write_prompt(
                            character,
                            model=chain(Task.PROMPT),
                            store=store,
                            rng=Random(1),
                            method="arbitrary",
                        )
                        return f"an idea of {len(written.text)} characters"

                    async def descriptions() -> str:
                        found = await write_descriptions(
                            "a fox",
                            model=chain(Task.DESCRIPTION),
                            library=library,
                            template="stable_diffusion_prompt",
                            character="Fox",
                        )
                        return f"{len(found)} descriptions"

                    async def captions() -> str:
                        written = await write_captions(
                            character=character,
                            prompt="a fox",
                            descriptions=["a fox"],
                            model=chain(Task.CAPTION),
                        )
                        return ", ".join(f"{p}: {len(c)} chars" for p, c in written.items())

                    async def vision() -> str:
                        scorer = VisionScorer(chain(Task.VISION))
                        verdict = await scorer.score(folder / "fox.png", "a fox")
                        return f"score {verdict.score}"

                    for name, work in [
                        ("prompt", prompt),
                        ("descriptions", descriptions),
                        ("captions", captions),
                        ("vision", vision),
                    ]:
                        steps.append(await timed(kind, name, work))
        finally:
            await store.close()
    for step in steps:  # a late wake-up belongs to the step it happened in
        late = [
            ms
            for ms, woke in zip(lag.lags_ms, lag.woke, strict=True)
            if step.started < woke - ms / 1000 < step.ended
        ]
        step.lag_ms = max(late, default=0.0)
    baseline = await idle(sum(step.seconds for step in steps), lag_interval)
    return steps, lag, baseline


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-kb", type=int, default=1024, help="each answer's size")
    parser.add_argument("--repeats", type=int, default=3, help="times each answer is fed")
    parser.add_argument("--lag-interval", type=float, default=0.005, help="sampler period, s")
    args = parser.parse_args(argv)
    size = args.size_kb * 1024
    steps, lag, baseline = asyncio.run(bench(size, args.repeats, args.lag_interval))
    print(f"answers of {size:,} characters; loop sampled every {args.lag_interval * 1000:g} ms")
    for first in steps[: len(KINDS) * 4]:  # one line a step: its slowest round
        rounds = [s for s in steps if (s.kind, s.step) == (first.kind, first.step)]
        worst = max(rounds, key=lambda s: s.seconds)
        print(
            f"  {first.kind:13} {first.step:13} {worst.seconds:7.3f} s  lag max "
            f"{max(s.lag_ms for s in rounds):6.1f} ms  {first.outcome[:70]}"
        )
    figures = {
        "loop_lag_p99_ms": _percentile(lag.lags_ms, 0.99),
        "loop_lag_max_ms": max(lag.lags_ms, default=0.0),
        "loop_busy_max_ms": max(lag.busy_ms, default=0.0),
        "idle_lag_p99_ms": _percentile(baseline.lags_ms, 0.99),
        "worst_step_s": max(step.seconds for step in steps),
    }
    print(
        f"loop lag: p50 {_percentile(lag.lags_ms, 0.5):.2f} ms, p99 "
        f"{figures['loop_lag_p99_ms']:.2f} ms, max {figures['loop_lag_max_ms']:.2f} ms "
        f"({len(lag.lags_ms)} samples; goal: max under 50 ms); the loop's own CPU in the "
        f"latest wake-up: {figures['loop_busy_max_ms']:.2f} ms (the rest is waiting for a core "
        f"or for a thread's C call); the idle loop's lag p99 on this machine now: "
        f"{figures['idle_lag_p99_ms']:.2f} ms"
    )
    print(" ".join(f"{key}={value:.3f}" for key, value in figures.items()))
    return figures


if __name__ == "__main__":
    main()
