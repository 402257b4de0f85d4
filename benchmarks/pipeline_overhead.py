"""Benchmark: how close do N concurrent pipeline runs come to the critical path of their latencies?

Runs N text2img runs of the real Pipeline through the real Runner, wired by pipeline.wiring from
settings that point at in-process fakes with fixed latencies: the fake ComfyUI (`--job-seconds`
a prompt, one at a time per server) through the real ComfyPool; prompt, descriptions and
captions through the real Ollama client against the fake Ollama (`--llm-seconds` a call); scores
through the real VisionScorer and OpenAI-compatible client against the fake OpenAI
(`--vision-seconds` a call); the store on SQLite; review by the terminal's AutoReviewer;
publishing off. Prints the total against the critical-path ideal, the event-loop lag while the
runs go, peak RSS, and two slower ways to do the same work with the speedup over each:

- serial: our code one step at a time (each ComfyUI prompt waited for and downloaded before the
  next, one vision call at a time, one caption after the other, one run after another);
- reference: the reference design, which is the serial mode plus its pause after every image it
  scored (3 s, to stay under a provider's rate limit), scaled as the benchmark scales the
  latencies: they are about a tenth of a real GPU's and model's (0.5 s for a ~5 s image, 0.25 s
  for a ~2.5 s vision call), so the pause defaults to 3 s x vision-seconds / 2.5 s.

Imports pipeline, comfy and tests.fakes / tests.doubles.

    python benchmarks/pipeline_overhead.py [--runs 8] [--job-seconds 0.5] [--servers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from comfy import ComfyJob, ComfyPool, Event, Workflow  # noqa: E402  (needs the path set above)
from pipeline.captions import write_caption  # noqa: E402
from pipeline.characters import Character  # noqa: E402
from pipeline.console import AutoReviewer  # noqa: E402
from pipeline.llm.base import Task  # noqa: E402
from pipeline.llm.factory import LanguageModels  # noqa: E402
from pipeline.models import Job, Platform, Run, RunState  # noqa: E402
from pipeline.ports import ImageData, JsonSchema, Progress, VisionModel  # noqa: E402
from pipeline.run import Pipeline  # noqa: E402
from pipeline.runner import Runner  # noqa: E402
from pipeline.settings import Settings, load_settings  # noqa: E402
from pipeline.store import open_store  # noqa: E402
from pipeline.vision import VERDICT_SCHEMA, VisionScorer  # noqa: E402
from pipeline.wiring import ModelScorer, open_engine  # noqa: E402
from tests.doubles import RecordingNotifier  # noqa: E402
from tests.fakes.comfyui import FakeComfyUI  # noqa: E402
from tests.fakes.llm_server import Recorded  # noqa: E402
from tests.fakes.ollama import FakeOllama  # noqa: E402
from tests.fakes.openai_api import FakeOpenAI  # noqa: E402

CHARACTER = """
character: {{name: Bench Fox, description: a small orange fox with a blue scarf}}
generation:
  generation_type_weights: {{text2img: 1}}
  workflows: {{text2img: workflows/text2img.json}}
  similarity_threshold: 0.5
  keep_best_when_none_pass: 1
  descriptions: {descriptions}
  prompt_method_weights: {{arbitrary: 1}}
  image_system_prompt_weights: {{stable_diffusion_prompt: 1}}
  style_weights: {{"": 1}}
social_media:
  default_hashtags: ["#benchfox"]
  platforms:
    instagram: {{enabled: true, credentials: bench_ig}}
    twitter: {{enabled: true, credentials: bench_x}}
additional_params:
  general: {{images_per_description: {images}}}
"""

#: a lag sample later than this is listed with the time it happened
SPIKE_MS = 10.0

#: the reference design's pause after each scored image, and the real vision call the
#: benchmark's `--vision-seconds` stands for (the pause is scaled by their ratio)
REFERENCE_PAUSE_S = 3.0
REAL_VISION_CALL_S = 2.5


@dataclass(frozen=True)
class Params:
    runs: int
    descriptions: int
    images: int
    servers: int
    job_seconds: float
    llm_seconds: float
    vision_seconds: float
    vision_limit: int
    file_kb: int
    lag_interval: float
    idle_seconds: float
    #: the reference design's pause after each scored image, already scaled
    reference_pause: float = 0.0

    @property
    def images_per_run(self) -> int:
        return self.descriptions * self.images

    @property
    def scoring_seconds(self) -> float:
        """One run's scoring: its images under the vision limit."""
        return math.ceil(self.images_per_run / self.vision_limit) * self.vision_seconds


@dataclass(frozen=True)
class Ideal:
    """The unavoidable latencies of the workload, in seconds.

    A run is: prompt (1 text call), descriptions (1 text call), its ComfyUI prompts, scoring
    (its images under the vision limit), captions (2 text calls at once). All runs write their
    ideas at once, so ComfyUI can start after two text calls (`lead`); it then runs every prompt
    back to back, one at a time per server (`gpu`); after the last one, that run still scores
    and captions (`tail`). No schedule beats that, nor the chain of one run alone.
    """

    lead: float
    gpu: float
    tail: float
    one_run: float
    #: the serial mode's own floor: every latency of every run one after the other
    sequential: float
    #: the reference design's floor: the serial floor plus its pause after every image
    reference: float

    @classmethod
    def of(cls, p: Params) -> Ideal:
        lead, tail = 2 * p.llm_seconds, p.scoring_seconds + p.llm_seconds
        gpu = math.ceil(p.runs * p.descriptions / p.servers) * p.job_seconds
        one_run = lead + math.ceil(p.descriptions / p.servers) * p.job_seconds + tail
        per_run = (
            4 * p.llm_seconds + p.descriptions * p.job_seconds + p.images_per_run * p.vision_seconds
        )
        pauses = p.runs * p.images_per_run * p.reference_pause
        return cls(lead, gpu, tail, one_run, p.runs * per_run, p.runs * per_run + pauses)

    @property
    def gpu_path(self) -> float:
        return self.lead + self.gpu + self.tail

    @property
    def total(self) -> float:
        return max(self.gpu_path, self.one_run)


# ---------------------------------------------------------------------------- the fakes' answers


def _text_answer(params: Params) -> Callable[[Recorded], str]:
    """The fake Ollama answers each text task in the shape that task asks for."""

    def answer(recorded: Recorded) -> str:
        schema = recorded.schema if isinstance(recorded.schema, dict) else {}
        properties = schema.get("properties", {})
        if "descriptions" in properties:
            idea = recorded.prompt.splitlines()[0].removeprefix("Idea: ")
            scenes = [f"view {i + 1} of {idea}" for i in range(params.descriptions)]
            return json.dumps({"descriptions": scenes})
        if "hashtags" in properties:
            return json.dumps({"text": "A fox at the harbour at dusk.", "hashtags": ["#fox"]})
        return f"The fox reads a map at the harbour at dusk ({len(recorded.prompt)})."

    return answer


def _verdict(recorded: Recorded) -> str:
    return json.dumps({"score": 0.8, "reason": "matches the description"})


# ---------------------------------------------------------------------------- the reference design


class SerialGenerator:
    """The reference design's ComfyUI use: queue one prompt, wait for it, download it, and only
    then queue the next (ComfyUI idles while we download)."""

    def __init__(self, pool: ComfyPool) -> None:
        self.pool = pool

    async def submit(
        self,
        workflow: Workflow,
        out_dir: Path,
        *,
        tags: frozenset[str] = frozenset(),
        on_event: Callable[[Event], None] | None = None,
        images: Mapping[str, Path] | None = None,
        prompt_id: str | None = None,
    ) -> ComfyJob:
        job = await self.pool.submit(
            workflow, out_dir, tags=tags, on_event=on_event, images=images, prompt_id=prompt_id
        )
        await job.result()  # kept: the strategy's own result() returns the same files
        return job

    async def attach(
        self,
        prompt_id: str,
        out_dir: Path,
        *,
        server: str | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> ComfyJob | None:
        return await self.pool.attach(prompt_id, out_dir, server=server, on_event=on_event)


@dataclass
class PausingVision:
    """The reference design's vision use: after each image it scored it slept (3 s), to stay
    under the provider's rate limit."""

    model: VisionModel
    pause: float

    async def look(
        self,
        *,
        system: str,
        prompt: str,
        images: Sequence[ImageData],
        schema: JsonSchema | None = None,
    ) -> str:
        answer = await self.model.look(system=system, prompt=prompt, images=images, schema=schema)
        await asyncio.sleep(self.pause)
        return answer


@dataclass
class SerialCaptions:
    """One caption call after the other, as the reference design wrote them."""

    models: LanguageModels

    async def write(
        self, character: Character, *, prompt: str, descriptions: Sequence[str], subject: str
    ) -> dict[Platform, str]:
        return {
            platform: await write_caption(
                platform,
                character=character,
                prompt=prompt,
                descriptions=descriptions,
                model=self.models.for_task(Task.CAPTION),
            )
            for platform in Platform
        }


# ---------------------------------------------------------------------------- measuring


class LagSampler:
    """A task that sleeps `interval` over and over and notes how late it wakes: the wait any
    callback on the loop would see. For each sample it also notes how much of that lateness the
    loop's thread spent on the CPU (the rest is the process waiting for a core)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.lags_ms: list[float] = []
        self.busy_ms: list[float] = []
        self.woke: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LagSampler:
        self._task = asyncio.create_task(self._sample(), name="lag sampler")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _sample(self) -> None:
        while not self._stop.is_set():
            began, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.interval)
            woke, used = time.perf_counter(), time.thread_time() - cpu
            late = max(0.0, woke - began - self.interval)
            self.lags_ms.append(late * 1000)
            self.busy_ms.append(min(late, used) * 1000)
            self.woke.append(woke)


class StepClock:
    """A ProgressSink noting when each run entered each step (time.perf_counter)."""

    def __init__(self) -> None:
        self.entered: dict[str, dict[str, float]] = {}

    def progress(self, run_id: str, update: Progress) -> None:
        self.entered.setdefault(run_id, {}).setdefault(update.step, time.perf_counter())

    def awaiting_review(self, run_id: str, waiting: bool) -> None:
        """The review step's `progress` marks its time already."""

    def ended(self, run_id: str) -> None:
        self.entered.setdefault(run_id, {})["end"] = time.perf_counter()


@dataclass
class Phase:
    """What one way of running the workload measured."""

    total: float = 0.0
    cpu_seconds: float = 0.0
    states: list[RunState] = field(default_factory=list)
    lag: LagSampler | None = None
    steps: dict[str, dict[str, float]] = field(default_factory=dict)
    comfy_busy: float = 0.0
    comfy_gaps: list[float] = field(default_factory=list)
    #: seconds from the first submit to the first ComfyUI job; from the last job's end to the end
    first_job: float = 0.0
    after_last_job: float = 0.0


def _project(folder: Path, params: Params) -> None:
    shutil.copytree(ROOT / "workflows", folder / "workflows")
    (folder / "characters").mkdir()
    (folder / "characters" / "bench.yaml").write_text(
        CHARACTER.format(descriptions=params.descriptions, images=params.images)
    )


def _settings(
    folder: Path, params: Params, comfy: Sequence[str], ollama: str, openai: str, *, serial: bool
) -> Settings:
    return load_settings(
        env_file=None,
        data_dir=folder / "data",
        characters_dir=folder / "characters",
        workflows_dir=folder / "workflows",
        templates_dir=folder / "templates",
        comfyui_servers=list(comfy),
        llm_chain=["ollama"],
        llm_chain_vision=["openrouter"],
        ollama_host=ollama,
        openrouter_base_url=openai,
        openrouter_api_key="sk-bench",
        openrouter_rpm=0,
        vision_concurrency=1 if serial else params.vision_limit,
    )


def _tiny_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "orange").save(out, format="JPEG")
    return out.getvalue()


async def _warm_up(
    pool: ComfyPool, models: LanguageModels, folder: Path, fakes: Sequence[FakeComfyUI]
) -> None:
    """What a running bot has long done before: open the WebSockets, read /object_info, and
    make one call per language-model client (whose first call imports and builds its types:
    the OpenAI SDK's blocks the loop for 70-130 ms here, once per process)."""
    template = Workflow.load(folder / "workflows" / "text2img.json")
    for fake in fakes:
        client = pool.client(fake.url)
        await client.connect()
        await client.problems(template)
    await models.for_task(Task.PROMPT).complete(system="warm-up", prompt="warm-up")
    pixel = ImageData(await asyncio.to_thread(_tiny_jpeg), "image/jpeg")
    await models.for_task(Task.VISION).look(
        system="warm-up", prompt="warm-up", images=[pixel], schema=VERDICT_SCHEMA
    )
    for fake in fakes:
        fake.jobs.clear()


async def _measure(
    folder: Path,
    params: Params,
    fakes: Sequence[FakeComfyUI],
    ollama: str,
    openai: str,
    *,
    serial: bool,
    pause: float = 0.0,
) -> Phase:
    """Open the store and the engine as the command line does, run the workload, time it
    (serial: one step at a time; with `pause`, also that long after every scored image)."""
    _project(folder, params)
    settings = _settings(folder, params, [f.url for f in fakes], ollama, openai, serial=serial)
    phase = Phase()
    clock = StepClock()
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store("", sqlite_path=settings.database_path))
        engine = await stack.enter_async_context(open_engine(settings, store))
        pipeline: Pipeline = engine.pipeline_for(AutoReviewer(), RecordingNotifier())
        if serial:
            pipeline = replace(
                pipeline,
                generator=SerialGenerator(engine.pool),
                captions=SerialCaptions(engine.models),
            )
        if pause > 0:
            paused = PausingVision(engine.models.for_task(Task.VISION), pause)
            vision = VisionScorer(paused, concurrency=1, max_side=settings.vision_max_side)
            pipeline = replace(pipeline, vision=vision, scorer=ModelScorer(vision))
        limit = 1 if serial else params.runs
        runner = Runner(
            store,
            pipeline.execute,
            max_runs=limit,
            max_per_character=limit,
            max_per_requester=limit,
        )
        stack.push_async_callback(runner.shutdown)
        await _warm_up(engine.pool, engine.models, folder, fakes)

        async def run_one(seed: int) -> Run:
            run = await runner.submit(Job("bench", seed=seed, publish=False), sink=clock)
            done = await runner.wait(run.id)
            clock.ended(run.id)
            return done

        async with LagSampler(params.lag_interval) as phase.lag:
            cpu, began = time.process_time(), time.perf_counter()
            finished = await asyncio.gather(*(run_one(seed) for seed in range(params.runs)))
            phase.total = time.perf_counter() - began
            phase.cpu_seconds = time.process_time() - cpu
    phase.states = [run.state for run in finished]
    phase.steps = clock.entered
    jobs = [job for fake in fakes for job in fake.jobs]
    phase.comfy_busy = sum((job.ended or job.started) - job.started for job in jobs)
    phase.comfy_gaps = [gap for fake in fakes for gap in fake.idle_gaps()]
    phase.first_job = min((job.started for job in jobs), default=began) - began
    last_end = max((job.ended or job.started for job in jobs), default=began)
    phase.after_last_job = began + phase.total - last_end
    for run in finished:
        if run.state is not RunState.APPROVED:
            raise SystemExit(f"run {run.id} ended {run.state.value}, not approved: {run.failure}")
    return phase


async def bench(params: Params) -> tuple[Phase, Phase, Phase, LagSampler]:
    """(the concurrent pipeline, the serial mode, the reference design, the loop's lag with
    nothing running)."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = Path(tmp)
        async with AsyncExitStack() as stack:
            fakes = [
                await stack.enter_async_context(FakeComfyUI(job_seconds=params.job_seconds))
                for _ in range(params.servers)
            ]
            for fake in fakes:
                fake.faults.output_bytes = params.file_kb * 1024 or None
            ollama = await stack.enter_async_context(FakeOllama())
            ollama.respond_with(_text_answer(params), delay=params.llm_seconds)
            openai = await stack.enter_async_context(FakeOpenAI())
            openai.respond_with(_verdict, delay=params.vision_seconds)
            async with LagSampler(params.lag_interval) as idle:
                await asyncio.sleep(params.idle_seconds)
            urls = (ollama.url, openai.url)
            concurrent = await _measure(folder / "concurrent", params, fakes, *urls, serial=False)
            sequential = await _measure(folder / "sequential", params, fakes, *urls, serial=True)
            reference = await _measure(
                folder / "reference",
                params,
                fakes,
                *urls,
                serial=True,
                pause=params.reference_pause,
            )
    return concurrent, sequential, reference, idle


# ---------------------------------------------------------------------------- the report


def _percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _spread(values: Sequence[float]) -> str:
    return (
        f"p50 {_percentile(values, 0.5):.2f} ms, p99 {_percentile(values, 0.99):.2f} ms, "
        f"max {max(values, default=0.0):.2f} ms"
    )


def _step_lines(params: Params, entered: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Per step of fixed latency, its time over that latency across the runs."""
    fixed = {
        "prompt": ("describe", params.llm_seconds),
        "describe": ("generate", params.llm_seconds),
        "score": ("caption", params.scoring_seconds),
        "caption": ("review", params.llm_seconds),
        "review": ("end", 0.0),
    }
    lines = []
    for step, (following, latency) in fixed.items():
        over = [
            (times[following] - times[step] - latency) * 1000
            for times in entered.values()
            if step in times and following in times
        ]
        if over:
            lines.append(
                f"{step:<8} {latency * 1000:4.0f} ms fixed, over it: median "
                f"{statistics.median(over):5.1f} ms, max {max(over):5.1f} ms"
            )
    return lines


def _notes(floor: Ideal, phase: Phase, lag: LagSampler, ratio: float) -> list[str]:
    """Why a goal was missed, as far as the figures tell."""
    notes = []
    if ratio > 1.05:
        lead = (phase.first_job - floor.lead) * 1000
        tail = (phase.after_last_job - floor.tail) * 1000
        idle = sum(phase.comfy_gaps) * 1000
        notes.append(
            f"the total is {(ratio - 1) * 100:.1f}% over: {lead:.0f} ms before the first ComfyUI "
            f"job, {tail:.0f} ms after the last, {idle:.0f} ms of ComfyUI idling in between; "
            "see the steps above for where"
        )
    p99, own = _percentile(lag.lags_ms, 0.99), _percentile(lag.busy_ms, 0.99)
    if p99 >= 10:
        if own < 10:
            notes.append(
                f"the lag p99 of {p99:.1f} ms is mostly the process waiting for a core: the "
                f"loop's own CPU work in those samples is {own:.1f} ms at p99"
            )
        else:
            notes.append(
                f"the loop's own CPU work reaches {own:.1f} ms at p99 (profiled: mostly the "
                "language-model SDKs' per-call work, httpx and the OpenAI request transform)"
            )
    return notes


def report(
    params: Params, concurrent: Phase, sequential: Phase, reference: Phase, idle: LagSampler
) -> dict[str, float]:
    """Print the figures; return the six of the last line."""
    floor = Ideal.of(params)
    ratio = concurrent.total / floor.total
    speedup = sequential.total / concurrent.total
    versus_reference = reference.total / concurrent.total
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    lag = concurrent.lag or LagSampler(params.lag_interval)
    gaps, serial_gaps = concurrent.comfy_gaps, sequential.comfy_gaps
    print(
        f"runs={params.runs} descriptions={params.descriptions} images_per_description="
        f"{params.images} servers={params.servers} job_s={params.job_seconds:g} "
        f"llm_s={params.llm_seconds:g} vision_s={params.vision_seconds:g} "
        f"vision_limit={params.vision_limit} file_kb={params.file_kb}"
    )
    print(
        "real: Pipeline, Runner, wiring.Engine, ComfyPool/ComfyClient, Ollama client (prompt, "
        "descriptions, captions), OpenAI-compatible client + VisionScorer (scores), SQLite "
        "store, AutoReviewer"
    )
    print("doubles: RecordingNotifier (notices); publishing off (--no-publish runs)")
    print("the fakes run in this process and loop: their work counts in the lag, CPU and RSS")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} (other processes' work)")
    print(
        f"ideal: {floor.total:.3f} s = max(GPU-bound path {floor.gpu_path:.3f} s = 2 text calls "
        f"{floor.lead:.3f} + {params.runs * params.descriptions} prompts on {params.servers} "
        f"server(s) {floor.gpu:.3f} + the last run's scoring and captions {floor.tail:.3f}; "
        f"one run alone {floor.one_run:.3f} s)"
    )
    print(
        f"concurrent: total {concurrent.total:.3f} s, {concurrent.total - floor.total:.3f} s "
        f"over the ideal ({(ratio - 1) * 100:.1f}%, goal within 5%)"
    )
    print(
        f"  ComfyUI busy {concurrent.comfy_busy:.3f} s, idle between jobs median "
        f"{statistics.median(gaps) * 1000 if gaps else 0.0:.2f} ms, max "
        f"{max(gaps, default=0.0) * 1000:.2f} ms"
    )
    print(
        f"  first ComfyUI job {concurrent.first_job:.3f} s after the first submit (ideal "
        f"{floor.lead:.3f}); last run done {concurrent.after_last_job:.3f} s after the last job "
        f"(ideal {floor.tail:.3f})"
    )
    for line in _step_lines(params, concurrent.steps):
        print("  " + line)
    print(
        f"  event-loop lag ({len(lag.lags_ms)} samples, every {params.lag_interval * 1000:g} ms): "
        f"{_spread(lag.lags_ms)} (goal p99 under 10 ms)"
    )
    print(f"    of it the loop thread's own CPU work: {_spread(lag.busy_ms)}")
    print(f"    the same sampler with nothing running: {_spread(idle.lags_ms)}")
    spikes = [(at - lag.woke[0], late) for at, late in zip(lag.woke, lag.lags_ms, strict=True)]
    late = [f"{ms:.0f} ms at {at:.2f} s" for at, ms in spikes if ms > SPIKE_MS]
    if late:
        print(f"    {len(late)} sample(s) over {SPIKE_MS:g} ms: {', '.join(late[:12])}")
    print(
        f"  CPU {concurrent.cpu_seconds:.2f} s in {concurrent.total:.2f} s "
        f"({concurrent.cpu_seconds / concurrent.total * 100:.0f}% of one core, fakes included)"
    )
    print(f"  peak RSS {rss_mb:.1f} MB (whole process, both phases, fakes included)")
    print(
        f"serial (our code, one step at a time): total {sequential.total:.3f} s (its floor "
        f"{floor.sequential:.3f} s), ComfyUI idle between jobs median "
        f"{statistics.median(serial_gaps) * 1000 if serial_gaps else 0.0:.2f} ms; "
        f"the concurrent pipeline is {speedup:.2f}x faster"
    )
    print(
        f"reference design (serial, and a {params.reference_pause:g} s pause after each of the "
        f"{params.runs * params.images_per_run} images: 3 s scaled): total "
        f"{reference.total:.3f} s (its floor {floor.reference:.3f} s); the concurrent "
        f"pipeline is {versus_reference:.2f}x faster"
    )
    for note in _notes(floor, concurrent, lag, ratio):
        print("note: " + note)
    return {
        "overhead_ratio": ratio,
        "loop_lag_p99_ms": _percentile(lag.lags_ms, 0.99),
        "peak_rss_mb": rss_mb,
        "speedup_vs_sequential": speedup,
        "reference_s": reference.total,
        "speedup_vs_reference": versus_reference,
    }


def parse(argv: Sequence[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs at once (default 8)")
    parser.add_argument("--descriptions", type=int, default=2, help="ComfyUI prompts per run")
    parser.add_argument("--images", type=int, default=2, help="images per description")
    parser.add_argument("--servers", type=int, default=1, help="fake ComfyUI servers")
    parser.add_argument("--job-seconds", type=float, default=0.5, help="GPU time per prompt")
    parser.add_argument("--llm-seconds", type=float, default=0.2, help="per text call")
    parser.add_argument("--vision-seconds", type=float, default=0.25, help="per vision call")
    parser.add_argument("--vision-limit", type=int, default=4, help="vision calls at once")
    parser.add_argument("--file-kb", type=int, default=512, help="size of each image (0: tiny)")
    parser.add_argument("--lag-ms", type=float, default=5.0, help="lag sampler interval")
    parser.add_argument("--idle-seconds", type=float, default=1.0, help="idle lag baseline")
    parser.add_argument(
        "--reference-pause",
        type=float,
        help="the reference design's pause after each image (default: 3 s scaled as the "
        f"vision latency, 3 x vision-seconds / {REAL_VISION_CALL_S:g})",
    )
    args = parser.parse_args(argv)
    for name in ("runs", "descriptions", "images", "servers", "vision_limit"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return Params(
        runs=args.runs,
        descriptions=args.descriptions,
        images=args.images,
        servers=args.servers,
        job_seconds=args.job_seconds,
        llm_seconds=args.llm_seconds,
        vision_seconds=args.vision_seconds,
        vision_limit=args.vision_limit,
        file_kb=args.file_kb,
        lag_interval=args.lag_ms / 1000,
        idle_seconds=args.idle_seconds,
        reference_pause=(
            args.reference_pause
            if args.reference_pause is not None
            else REFERENCE_PAUSE_S * args.vision_seconds / REAL_VISION_CALL_S
        ),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    params = parse(argv)
    figures = report(params, *asyncio.run(bench(params)))
    print(
        f"overhead_ratio={figures['overhead_ratio']:.4f} "
        f"loop_lag_p99_ms={figures['loop_lag_p99_ms']:.3f} "
        f"peak_rss_mb={figures['peak_rss_mb']:.1f} "
        f"speedup_vs_sequential={figures['speedup_vs_sequential']:.2f} "
        f"reference_s={figures['reference_s']:.3f} "
        f"speedup_vs_reference={figures['speedup_vs_reference']:.2f}"
    )
    return figures


if __name__ == "__main__":
    main()
