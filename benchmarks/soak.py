"""Soak: many scheduled and requested runs against the fakes, with random faults, for a while.

The real Runner and Pipeline (wired by `pipeline.wiring`), the real ComfyUI pool against two
fake ComfyUI servers, the real language-model chain against fake Ollama and OpenAI-compatible
servers, and the PublishService over the store with recording publishers; a random reviewer.
Faults: ComfyUI node errors, rejected prompts, dropped WebSockets and a server down; LLM 5xx,
429 and garbage; publish failures; review timeouts; user cancels; and restarts (the runner
cancelled mid-flight, a new process built over the same store, every unfinished run taken up
by `pipeline.recovery`, the bot's own code for its start). Scheduled runs come from the bot's
own tick (`pipeline.scheduler`), each slot claimed in the store with its run.

Prints runs started, how they finished, resumed, failed by reason, lost (goal 0), duplicate
posts (goal 0), schedule slots claimed without a run (goal 0), memory and open file descriptors
at start and end (goal: no growth). One seed gives one sequence of random decisions; the
interleaving still depends on the machine's timing.
Imports pipeline, comfy and tests.fakes only.

    python benchmarks/soak.py [--seconds 30] [--seed 1] [--mysql [URL]] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import itertools
import json
import logging
import os
import re
import resource
import secrets
import shutil
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# ruff: noqa: E402  (the imports below need the path set above)
from comfy import ComfyPool
from pipeline.llm.factory import LanguageModels, build_models
from pipeline.models import (
    Decision,
    Job,
    Platform,
    PostRecord,
    ReviewTicket,
    Run,
    RunState,
    utcnow,
)
from pipeline.ports import OutgoingMedia, RemotePost
from pipeline.publish import (
    AccountAttentionError,
    AttentionBoard,
    TransientPublishError,
    build_publish_service,
)
from pipeline.recovery import Recovery
from pipeline.runner import Runner
from pipeline.schedule import SCHEDULE_REQUESTER
from pipeline.scheduler import Scheduler
from pipeline.settings import Settings, load_settings
from pipeline.store import SqlStore, connect
from pipeline.wiring import Engine, build_runner, characters_from
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import LlmFake, Recorded
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI

log = logging.getLogger("soak")

#: who a scheduled run is requested by (as bot.cogs.schedule names it)
USERS = ("ana", "ben", "chloe")
OPENAI_KEY = "sk-soak-" + "0" * 24
#: the fake ComfyUIs' history entries kept when the soak drops the fakes' records
KEPT_HISTORY = 200

CHARACTER = """
character: {{name: {name}, description: a small robot with a red antenna}}
generation:
  output_dir: output/{key}
  generation_type_weights: {{text2img: 3, text2image2image: 1}}
  workflows:
    text2img: workflows/text2img.json
    text2image2image: workflows/image2image.json
  similarity_threshold: 0.5
  keep_best_when_none_pass: 1
  descriptions: 2
  prompt_method_weights: {{arbitrary: 1}}
  style_weights: {{"": 1, watercolor: 1}}
social_media:
  default_hashtags: ["#soak"]
  platforms:
    instagram: {{enabled: true, credentials: {key}_ig}}
    twitter: {{enabled: true, credentials: {key}_x}}
    bluesky: {{enabled: true, credentials: {key}_bsky}}
additional_params:
  general: {{images_per_description: 1, images_per_input: 1, denoise: 0.5}}
  strategies:
    text2image2image: {{keep_top: 1}}
schedule:
  enabled: true
  timezone: UTC
  every_hours: 1
{chance}
"""


@dataclass(frozen=True)
class SoakConfig:
    """How long and how hard; every limit a keyword with a default."""

    seconds: float = 30.0
    seed: int = 1
    #: a MySQL/MariaDB server URL: the soak creates a fresh database there and drops it after
    mysql_url: str | None = None
    characters: int = 4
    #: mean seconds between simulated restarts, between faults, between requested runs
    restart_every: float = 5.0
    fault_every: float = 0.25
    request_every: float = 0.3
    #: one schedule hour passes every this many seconds
    hour_seconds: float = 0.8
    #: requested runs are only submitted while fewer than this many are active
    max_active: int = 6
    #: after the time is up: how long the last runs may take to finish
    drain_seconds: float = 30.0
    job_seconds: float = 0.02
    #: how often each kind of fault is drawn, relative to the others (0 turns one off)
    fault_weights: tuple[tuple[str, float], ...] = (
        ("comfy_node_error", 2),
        ("comfy_rejected", 1),
        ("comfy_ws_drop", 2),
        ("comfy_down", 1),
        ("llm_5xx", 3),
        ("llm_429", 2),
        ("llm_garbage", 2),
        ("user_cancel", 1),
    )
    #: chances per review: rejected, expired (the review timed out), slow (answered late)
    review_reject: float = 0.1
    review_expire: float = 0.1
    review_slow: float = 0.15
    #: chances per post call: a transient failure, an answer lost after posting, an account pause
    publish_transient: float = 0.1
    publish_lost_answer: float = 0.05
    publish_account: float = 0.01
    #: compare tracemalloc snapshots of the middle and the end (slows the soak down)
    trace_growth: bool = False


@dataclass
class Figures:
    """What a soak found; `line()` is the last line it prints."""

    seconds: float = 0.0
    store: str = "sqlite"
    runs_started: int = 0
    scheduled: int = 0
    requested: int = 0
    finished: Counter[str] = field(default_factory=Counter)
    resumed: int = 0
    restarts: int = 0
    failed_reasons: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    lost_runs: list[str] = field(default_factory=list)
    duplicate_posts: int = 0
    duplicate_slots: int = 0
    #: schedule slots claimed in the store whose run is not there (goal 0)
    slots_without_run: int = 0
    #: scheduled runs in the store that no claimed slot names (goal 0)
    scheduled_without_slot: int = 0
    published_without_post: int = 0
    posts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    errors_logged: Counter[str] = field(default_factory=Counter)
    #: the traceback of the first record of each message in `errors_logged` that carried one
    error_tracebacks: dict[str, str] = field(default_factory=dict)
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    peak_rss_mb: float = 0.0
    #: RSS while runs go, around the middle of the soak and over its last tenth (means of
    #: samples), and their difference: what the second half added (goal under 5 MB)
    rss_mid_mb: float = 0.0
    rss_late_mb: float = 0.0
    #: with `trace_growth`: the lines of code whose allocations grew most over the second half
    growth: list[str] = field(default_factory=list)
    fds_start: int = 0
    fds_end: int = 0
    fds_peak: int = 0

    @property
    def failed(self) -> int:
        return self.finished.get(RunState.FAILED.value, 0)

    @property
    def rss_growth_mb_second_half(self) -> float:
        return self.rss_late_mb - self.rss_mid_mb

    def line(self) -> str:
        return (
            f"runs_started={self.runs_started} finished={sum(self.finished.values())}"
            f" resumed={self.resumed} failed={self.failed} lost={self.lost}"
            f" duplicate_posts={self.duplicate_posts} slots_without_run={self.slots_without_run}"
            f" peak_rss_mb={self.peak_rss_mb:.1f}"
            f" rss_growth_mb_second_half={self.rss_growth_mb_second_half:.1f}"
            f" fds_start={self.fds_start} fds_end={self.fds_end}"
        )

    def report(self) -> str:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        lines = [
            f"soak: {self.seconds:.0f} s on {self.store}, {self.restarts} restart(s)",
            f"runs started: {self.runs_started}"
            f" (scheduled {self.scheduled}, requested {self.requested})",
            f"finished: {sum(self.finished.values())} ({counts(self.finished)})",
            f"resumed after a restart: {self.resumed}",
            f"failed: {self.failed}",
            *(f"  {n:>4}  {reason}" for reason, n in self.failed_reasons.most_common()),
            f"faults injected: {counts(self.faults)}",
            f"post records: {counts(self.posts)}",
            f"lost: {self.lost}" + (f" ({', '.join(self.lost_runs[:10])})" if self.lost else ""),
            f"duplicate posts: {self.duplicate_posts}; published runs missing a remote post:"
            f" {self.published_without_post}",
            f"schedule slots run twice: {self.duplicate_slots};"
            f" claimed without a run: {self.slots_without_run};"
            f" scheduled runs without a slot: {self.scheduled_without_slot}",
            f"errors logged: {sum(self.errors_logged.values())}",
            *(f"  {n:>4}  {message}" for message, n in self.errors_logged.most_common(8)),
            *(
                f"  first traceback of {message!r}:\n{self.error_tracebacks[message]}"
                for message, _ in self.errors_logged.most_common(2)
                if message in self.error_tracebacks
            ),
            f"memory (RSS): {self.rss_start_mb:.1f} MB at start, {self.rss_end_mb:.1f} MB at end,"
            f" peak {self.peak_rss_mb:.1f} MB; while runs go: {self.rss_mid_mb:.1f} MB mid-way,"
            f" {self.rss_late_mb:.1f} MB at the end, growth over the second half"
            f" {self.rss_growth_mb_second_half:.1f} MB (goal under 5 MB)",
            *(f"  grew: {line}" for line in self.growth),
            f"open file descriptors: {self.fds_start} at start, {self.fds_end} at end,"
            f" peak {self.fds_peak}",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- measuring


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:  # noqa: PTH123 (a /proc file)
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def settled_fds() -> int:
    """Open descriptors once closed connections had a moment to go and garbage is collected."""
    for _ in range(3):
        await asyncio.sleep(0.05)
        gc.collect()
    return open_fds()


#: the frames kept of each allocation when tracing growth (enough to reach our own code)
TRACE_FRAMES = 10


class MemoryWatch:
    """Samples the RSS while runs go (the fakes' records dropped first: they are the soak's,
    not ours); with `trace`, compares tracemalloc snapshots of the middle and the end."""

    def __init__(self, world: World, *, every: float = 0.25, trace: bool = False) -> None:
        self.world = world
        self.every = every
        self.trace = trace
        self.samples: list[tuple[float, float]] = []
        self._middle: tracemalloc.Snapshot | None = None

    async def watch(self, seconds: float) -> None:
        """Sample until cancelled; mid-way through `seconds`, the first snapshot."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        while True:
            await asyncio.sleep(self.every)
            self.world.forget_records()
            at = loop.time() - began
            self.samples.append((at, rss_mb()))
            if self.trace and self._middle is None and at >= seconds / 2:
                gc.collect()
                self._middle = tracemalloc.take_snapshot()

    def finish(self, figures: Figures, *, top: int = 12) -> None:
        """Means of the samples around the middle (40-60%) and over the last tenth; with
        `trace`, the project's lines whose allocations grew most since the middle (a library's
        allocation counts for the line of ours that called into it)."""
        if not self.samples:
            return
        end = self.samples[-1][0]
        middle = [rss for at, rss in self.samples if 0.4 * end <= at <= 0.6 * end]
        late = [rss for at, rss in self.samples if at >= 0.9 * end]
        figures.rss_mid_mb = sum(middle) / len(middle) if middle else self.samples[0][1]
        figures.rss_late_mb = sum(late) / len(late)
        if self.trace and self._middle is not None:
            gc.collect()
            grown = tracemalloc.take_snapshot().compare_to(self._middle, "traceback")
            by_caller: Counter[str] = Counter()
            blocks: Counter[str] = Counter()
            for stat in grown:
                caller = _our_frame(stat.traceback)
                by_caller[caller] += stat.size_diff
                blocks[caller] += stat.count_diff
            figures.growth = [
                f"{size / 1024:+.0f} KiB in {blocks[caller]:+d} blocks from {caller}"
                for caller, size in by_caller.most_common(top)
                if size > 0
            ]


def _our_frame(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame in this project's code (the library or standard module that
    allocated is seldom what keeps the memory), else the innermost frame."""
    for frame in reversed(traceback):  # tracemalloc lists the oldest call first
        if frame.filename.startswith(str(ROOT)) and "/.venv/" not in frame.filename:
            return f"{frame.filename.removeprefix(str(ROOT) + '/')}:{frame.lineno}"
    frame = traceback[-1]
    return f"{frame.filename}:{frame.lineno}"


class ErrorCounter(logging.Handler):
    """Counts ERROR records by message (run ids and numbers masked), so the soak can show
    which unexpected errors it met."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.counts: Counter[str] = Counter()
        self.tracebacks: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("aiohttp.server"):
            return  # a fake's side of a connection we dropped on purpose
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        trace = None
        if record.exc_info and record.exc_info[1] is not None:
            text += f" [{type(record.exc_info[1]).__name__}]"
            trace = "".join(traceback.format_exception(record.exc_info[1]))[-4000:]
        key = _mask(text)[:160]
        self.counts[key] += 1
        if trace is not None:
            self.tracebacks.setdefault(key, trace)


def _mask(text: str) -> str:
    text = re.sub(r"\b[0-9a-f]{12}\b", "RUN", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


# ---------------------------------------------------------------------------- doubles


@dataclass
class RandomReviewer:
    """Approves most runs after a short wait; rejects some, lets some expire, answers some late
    (so restarts land during review). A restart simply calls `wait` again, as the bot does."""

    rng: Random
    config: SoakConfig
    requests: int = 0

    async def request(self, run: Run, folder: Path) -> ReviewTicket:
        self.requests += 1
        return ReviewTicket(channel_id=1, message_ids=(self.requests,), posted_at=utcnow())

    async def wait(self, run: Run, ticket: ReviewTicket) -> Decision | None:
        roll = self.rng.random()
        slow = self.rng.random() < self.config.review_slow
        await asyncio.sleep(self.rng.uniform(0.3, 1.5) if slow else self.rng.uniform(0.01, 0.1))
        if roll < self.config.review_expire:
            return None
        kept = [i for i, item in enumerate(run.media) if item.kept]
        if roll < self.config.review_expire + self.config.review_reject:
            return Decision(approved=False, selected=(), by="soak", at=utcnow())
        chosen = tuple(i for i in kept if self.rng.random() < 0.7)
        return Decision(approved=True, selected=chosen, by="soak", at=utcnow())


@dataclass
class CountingNotifier:
    """The Notifier and PublishNotifier: counts what people would be told."""

    told: Counter[str] = field(default_factory=Counter)

    async def run_changed(self, run: Run, posts: Sequence[PostRecord] = ()) -> None:
        self.told[run.state.value] += 1

    async def account_needs_attention(self, platform: Platform, account: str, reason: str) -> None:
        self.told["account_needs_attention"] += 1

    async def post_uncertain(self, record: PostRecord) -> None:
        self.told["post_uncertain"] += 1


@dataclass(frozen=True)
class RemoteCopy:
    """A post as the platform holds it."""

    run_id: str
    account: str
    caption: str
    at: datetime
    remote_id: str


#: the platforms the soak's characters enable (their YAML above): each published run is on all
SOAK_PLATFORMS = (Platform.INSTAGRAM, Platform.TWITTER, Platform.BLUESKY)


@dataclass
class FlakyPlatform:
    """A platform (the Publisher port) that sometimes fails: busy, an answer lost after the post
    went through, or an account that needs a person. Remembers every post it holds."""

    platform: Platform
    rng: Random
    config: SoakConfig
    faults: Counter[str]
    held: list[RemoteCopy] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        # the fitted files are run_dir/fitted/<platform>/<index>.*, and run_dir is named by run
        run_id = media[0].path.parents[2].name
        await asyncio.sleep(self.rng.uniform(0.005, 0.03))  # the upload: a restart may land here
        roll = self.rng.random()
        config = self.config
        if roll < config.publish_account:
            self.faults["publish_account"] += 1
            raise AccountAttentionError("challenge_required", reason="a challenge to solve")
        roll -= config.publish_account
        if roll < config.publish_transient:
            self.faults["publish_transient"] += 1
            raise TransientPublishError("503 from the platform", retry_after=0.01)
        number = next(self._numbers)
        copy = RemoteCopy(run_id, account, caption, utcnow(), str(number))
        self.held.append(copy)
        if roll - config.publish_transient < config.publish_lost_answer:
            self.faults["publish_lost_answer"] += 1
            raise TransientPublishError("timeout reading the answer", maybe_posted=True)
        return RemotePost(copy.remote_id, f"https://{self.platform.value}.example/{number}")

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        for copy in reversed(self.held):
            if copy.account == account and copy.caption == caption and copy.at >= since:
                return RemotePost(copy.remote_id)
        return None


# ---------------------------------------------------------------------------- the language models


class Answers:
    """What the fake language models say, by the per-task model names the settings give."""

    def __init__(self, rng: Random) -> None:
        self._rng = rng
        self._ideas = itertools.count(1)

    def __call__(self, asked: Recorded) -> str:
        task = asked.model.rsplit("-", 1)[-1]
        if task == "prompt":
            return f"idea {next(self._ideas)}: the robot {self._rng.choice(_PLACES)} at dusk"
        if task == "description":
            found = re.search(r"Write exactly (\d+)", asked.system)
            count = int(found.group(1)) if found else 1
            idea = asked.prompt.splitlines()[0]
            return json.dumps({"descriptions": [f"{idea}, view {i + 1}" for i in range(count)]})
        if task == "caption":
            digest = hashlib.sha256(asked.prompt.encode()).hexdigest()[:10]
            return json.dumps({"text": f"A small robot's day ({digest}).", "hashtags": ["#robot"]})
        if task == "vision":
            score = round(self._rng.uniform(0.3, 1.0), 2)
            return json.dumps({"score": score, "reason": "the robot is there"})
        return "ok"


_PLACES = ("waters a garden", "reads in a library", "flies a kite", "bakes bread", "fixes a bike")


def model_settings(
    data_dir: Path, ollama: LlmFake, openai: LlmFake, comfy: Sequence[FakeComfyUI]
) -> Settings:
    """Settings that point every service at the fakes, with short waits (no .env read)."""
    per_task: dict[str, str] = {}
    for provider in ("ollama", "openrouter"):
        for task in ("prompt", "description", "caption", "vision"):
            per_task[f"{provider}_{task}_model"] = f"{provider}-{task}"
    project = data_dir.parent
    return load_settings(
        env_file=None,
        data_dir=data_dir,
        characters_dir=project / "characters",
        workflows_dir=project / "workflows",
        templates_dir=project / "templates",
        comfyui_servers=",".join(fake.url for fake in comfy),
        llm_chain="ollama,openrouter",
        ollama_host=ollama.url,
        openrouter_base_url=openai.url,
        openrouter_api_key=OPENAI_KEY,
        openrouter_rpm=0,
        llm_timeout_s=5,
        llm_vision_timeout_s=5,
        llm_attempts=2,
        llm_backoff_s=0.01,
        llm_backoff_max_s=0.05,
        llm_retry_after_max_s=0.5,
        llm_failures_before_cooldown=3,
        llm_cooldown_s=0.5,
        publish_retries=2,
        publish_backoff_seconds=0.01,
        publish_max_wait_seconds=1,
        shutdown_grace_seconds=0.1,
        **per_task,
    )


# ---------------------------------------------------------------------------- the world


@dataclass
class Ledger:
    """What the soak itself saw, to audit the store against at the end."""

    runs: set[str] = field(default_factory=set)
    slot_runs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    resumed: int = 0
    restarts: int = 0
    faults: Counter[str] = field(default_factory=Counter)


class World:
    """Everything outside the process: the fakes, the files, the store's server, the clock of
    the schedule. Processes come and go over it."""

    def __init__(self, config: SoakConfig, folder: Path, stack: AsyncExitStack) -> None:
        self.config = config
        self.folder = folder
        self.stack = stack
        self.rng = Random(config.seed)
        self.ledger = Ledger()
        self.comfy: list[FakeComfyUI] = []
        self.ollama = FakeOllama()
        self.openai = FakeOpenAI(api_key=OPENAI_KEY)
        self.platforms = {
            p: FlakyPlatform(p, Random(f"{config.seed}/{p.value}"), config, self.ledger.faults)
            for p in SOAK_PLATFORMS
        }
        self.reviewer = RandomReviewer(Random(f"{config.seed}/review"), config)
        self.notifier = CountingNotifier()
        self.store_url = f"sqlite:///{folder / 'data' / 'soak.db'}"
        self.hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.calm = False
        self.settings: Settings

    async def open(self) -> None:
        project = self.folder
        shutil.copytree(ROOT / "workflows", project / "workflows")
        (project / "characters").mkdir()
        for index in range(self.config.characters):
            key = f"robot{index + 1}"
            chance = (
                "  chance: {base: 0.5, growth_per_hour: 0.25, maximum: 1.0}" if index % 2 else ""
            )
            text = CHARACTER.format(name=f"Robot {index + 1}", key=key, chance=chance)
            (project / "characters" / f"{key}.yaml").write_text(text, encoding="utf-8")
        for _ in range(2):
            fake = FakeComfyUI(job_seconds=self.config.job_seconds, steps=2)
            self.comfy.append(await self.stack.enter_async_context(fake))
        answers = Answers(Random(f"{self.config.seed}/answers"))
        for llm in (self.ollama, self.openai):
            await self.stack.enter_async_context(llm)
            llm.respond_with(answers)
        self.settings = model_settings(project / "data", self.ollama, self.openai, self.comfy)
        if self.config.mysql_url:
            self.store_url = await asyncio.to_thread(_create_database, self.config.mysql_url)
            self.stack.push_async_callback(
                asyncio.to_thread, _drop_database, self.config.mysql_url, self.store_url
            )

    def forget_records(self) -> None:
        """Drop what the fakes recorded (they keep every request), so memory shows ours."""
        self.ollama.requests.clear()
        self.openai.requests.clear()
        for fake in self.comfy:
            fake.prompts.clear()
            fake.jobs.clear()
            fake.uploads.clear()
            # ComfyUI bounds its history too (10 000 prompts); the last ones stay for attaches
            for prompt_id in list(fake.history)[:-KEPT_HISTORY]:
                del fake.history[prompt_id]

    # ------------------------------------------------------------------ faults
    async def chaos(self, process: Callable[[], Process]) -> None:
        """Inject a random fault every so often until cancelled."""
        rng = Random(f"{self.config.seed}/faults")
        kinds = [k for k, w in self.config.fault_weights if w > 0]
        weights = [w for _, w in self.config.fault_weights if w > 0]
        while kinds:
            await asyncio.sleep(rng.expovariate(1 / self.config.fault_every))
            kind = rng.choices(kinds, weights)[0]
            try:
                if await self._fault(kind, rng, process()):
                    self.ledger.faults[kind] += 1
            except Exception:  # a fault that cannot be injected is the soak's problem, not ours
                log.exception("could not inject %s", kind)

    async def _fault(self, kind: str, rng: Random, process: Process) -> bool:
        fake = rng.choice(self.comfy)
        llm: LlmFake = rng.choice((self.ollama, self.openai))
        if kind == "comfy_node_error":
            fake.faults.fail_class = rng.choice(("KSampler", "VAEDecode", "SaveImage"))
            await asyncio.sleep(self.config.job_seconds * 3)
            fake.faults.fail_class = None
        elif kind == "comfy_rejected":
            fake.reject_next()
        elif kind == "comfy_ws_drop":
            if rng.random() < 0.5:
                fake.faults.drop_ws_mid_job = True
            else:
                await fake.drop_websockets(refuse_seconds=rng.uniform(0, 0.3))
        elif kind == "comfy_down":
            await fake.go_down()
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            await fake.come_up()
        elif kind == "llm_5xx":
            llm.fail(rng.choice((500, 502, 503)), times=rng.randint(1, 3))
        elif kind == "llm_429":
            llm.fail(429, retry_after=rng.choice((0.01, 0.05, 5)), times=rng.randint(1, 2))
        elif kind == "llm_garbage":
            token = f"{rng.getrandbits(32):08x}"
            llm.reply(rng.choice((f"<think>{token}", f"{{broken {token}", f"[{token}] no json")))
        elif kind == "user_cancel":
            active = process.runner.active()
            if not active:
                return False
            await asyncio.wait_for(process.runner.cancel(rng.choice(active)), timeout=10)
        return True

    async def lift_pauses(self) -> None:
        """A person who solves every account's challenge a second after it paused."""
        board = AttentionBoard(self.settings.attention_dir)
        while True:
            await asyncio.sleep(1.0)
            for pause in await asyncio.to_thread(board.all):
                await asyncio.to_thread(board.resume, pause.platform, pause.account)

    def quiet(self) -> None:
        """No more faults: the end of the soak lets every run finish."""
        self.calm = True
        for fake in self.comfy:
            fake.faults.fail_class = None
            fake.faults.reject_next.clear()
            fake.faults.drop_ws_mid_job = False
        for platform in self.platforms.values():
            platform.config = replace(
                platform.config, publish_transient=0, publish_lost_answer=0, publish_account=0
            )
        self.reviewer.config = replace(self.reviewer.config, review_slow=0)


def _create_database(server_url: str) -> str:
    import pymysql

    parts = urlsplit(server_url)
    name = "mo_soak_" + secrets.token_hex(4)
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        autocommit=True,
    )
    with conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


def _drop_database(server_url: str, database_url: str) -> None:
    import pymysql

    parts = urlsplit(server_url)
    name = urlsplit(database_url).path.lstrip("/")
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        autocommit=True,
    )
    with conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")


# ---------------------------------------------------------------------------- one process


class _LedgerSlots:
    """The store as the schedule's tick sees it, noting in the ledger each run a claim saves
    (the tick is the real `pipeline.scheduler`'s; only this seam is the soak's)."""

    def __init__(self, store: SqlStore, ledger: Ledger) -> None:
        self.store = store
        self.ledger = ledger

    async def save_run(self, run: Run) -> None:
        await self.store.save_run(run)

    async def load_run(self, run_id: str) -> Run | None:
        return await self.store.load_run(run_id)

    async def list_runs(
        self,
        *,
        states: Collection[RunState] | None = None,
        character: str | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
    ) -> list[Run]:
        return await self.store.list_runs(
            states=states, character=character, updated_before=updated_before, limit=limit
        )

    async def count_posts(self, platform: str, account: str, since: datetime) -> int:
        return await self.store.count_posts(platform, account, since)

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        if not await self.store.claim_slot_with_run(slot, run):
            return False
        self.ledger.runs.add(run.id)
        self.ledger.slot_runs.setdefault((run.character, slot), []).append(run.id)
        return True


class Process:
    """One life of the bot: store, ComfyUI pool, language models, pipeline and runner, plus its
    schedule loop and the people asking for runs. Ends by `stop` (a crash or a restart)."""

    def __init__(self, world: World, number: int) -> None:
        self.world = world
        self.number = number
        self.rng = Random(f"{world.config.seed}/process/{number}")
        self.stack = AsyncExitStack()
        self.tasks: set[asyncio.Task[None]] = set()
        self.store: SqlStore
        self.runner: Runner

    @classmethod
    async def start(cls, world: World, number: int) -> Process:
        process = cls(world, number)
        await process._open()
        return process

    async def _open(self) -> None:
        world = self.world
        settings = world.settings
        stack = self.stack
        self.store = await connect(world.store_url, sqlite_path=settings.database_path)
        stack.push_async_callback(self.store.close)
        characters = await asyncio.to_thread(characters_from, settings)
        self.characters = characters
        pool = await stack.enter_async_context(
            ComfyPool(settings.comfyui_servers, retry_after=0.5, probe_timeout=2)
        )
        models: LanguageModels = build_models(settings)
        stack.push_async_callback(models.aclose)
        engine = Engine(settings, self.store, characters, pool, models, frozenset())
        publisher = build_publish_service(
            settings,
            self.store,
            notifier=world.notifier,
            publishers=dict(world.platforms),
        )
        pipeline = replace(engine.pipeline_for(world.reviewer, world.notifier), publisher=publisher)
        self.runner = build_runner(
            settings,
            self.store,
            pipeline.execute,
            shutdown_grace=self.rng.choice((0.0, 0.05, settings.shutdown_grace_seconds)),
        )
        self.scheduler = Scheduler(characters, _LedgerSlots(self.store, world.ledger), self.runner)
        # As the bot does at start (pipeline.recovery, the bot's own code): every unfinished
        # run goes on again; here every run and review is this process's (one reviewer, no
        # command line beside it).
        world.ledger.resumed += await Recovery(self.runner, self.store).at_start()

    def feed(self) -> None:
        """Start the schedule loop and the people asking for runs."""
        for coroutine in (self._schedule(), self._requests()):
            task = asyncio.create_task(coroutine)
            self.tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("soak task failed", exc_info=task.exception())

    async def _requests(self) -> None:
        world = self.world
        config = world.config
        keys = await asyncio.to_thread(self.characters.names)
        while True:
            await asyncio.sleep(self.rng.expovariate(1 / config.request_every))
            if len(self.runner.active()) >= config.max_active:
                continue
            job = Job(
                character=self.rng.choice(keys),
                requested_by=self.rng.choice(USERS),
                seed=self.rng.randrange(2**31),
                quick=self.rng.random() < 0.2,
            )
            run = await self.runner.submit(job)
            world.ledger.runs.add(run.id)

    async def _schedule(self) -> None:
        """The hourly loop, an hour every `hour_seconds`; a new process first ticks the hour
        its predecessor may have ticked already, and each tick runs twice at once (two bots on
        one database): the slot in the store lets exactly one of them start the run."""
        world = self.world
        while True:
            moment = world.hour
            # a task group, not gather: cancelled, it waits for both ticks to unwind (gather
            # ends at the first child's cancel, and the store would close under the other)
            async with asyncio.TaskGroup() as ticks:
                for _ in range(2):
                    ticks.create_task(self.scheduler.tick(moment))
            await asyncio.sleep(world.config.hour_seconds)
            if world.hour == moment:
                world.hour = moment + timedelta(hours=1)

    async def drain(self, seconds: float) -> bool:
        """Wait until no run is active; False when some still are after `seconds`."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while self.runner.active():
            if loop.time() > until:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop_feeding(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks))

    async def stop(self) -> None:
        """The process ends: its loops stop, runs are cancelled mid-flight after the runner's
        (short, random) grace, and every resource is closed."""
        await self.stop_feeding()
        await self.runner.shutdown()
        await self.stack.aclose()


# ---------------------------------------------------------------------------- the soak


@asynccontextmanager
async def _world(config: SoakConfig, workdir: Path | None) -> AsyncIterator[World]:
    async with AsyncExitStack() as stack:
        folder = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        world = World(config, folder, stack)
        await world.open()
        yield world


async def soak(config: SoakConfig, workdir: Path | None = None) -> Figures:
    """Run the soak for `config.seconds`, let the last runs finish, and audit the store."""
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    tracing = config.trace_growth and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start(TRACE_FRAMES)
    try:
        async with _world(config, workdir) as world:
            figures = await _soak(world)
    finally:
        logging.getLogger().removeHandler(errors)
        if tracing:
            tracemalloc.stop()
    figures.errors_logged = errors.counts
    figures.error_tracebacks = errors.tracebacks
    return figures


async def _soak(world: World) -> Figures:
    config = world.config
    figures = Figures(seconds=config.seconds, store="mysql" if config.mysql_url else "sqlite")
    figures.fds_start = await settled_fds()
    loop = asyncio.get_running_loop()
    rng = Random(f"{config.seed}/restarts")
    number = itertools.count(1)
    process = await Process.start(world, next(number))
    figures.rss_start_mb = rss_mb()  # once every module is imported and the first process runs
    process.feed()
    memory = MemoryWatch(world, trace=config.trace_growth)
    side = {
        asyncio.create_task(world.chaos(lambda: process)),
        asyncio.create_task(world.lift_pauses()),
        asyncio.create_task(memory.watch(config.seconds)),
    }
    began = loop.time()
    deadline = began + config.seconds
    try:
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(left, config.restart_every * rng.uniform(0.5, 1.5)))
            figures.fds_peak = max(figures.fds_peak, open_fds())
            world.forget_records()
            if loop.time() < deadline:
                # the time a restart takes does not count: on a busy machine the soak still
                # gets its `seconds` of running, and the same seed the same number of restarts
                stopped = loop.time()
                await process.stop()
                world.ledger.restarts += 1
                process = await Process.start(world, next(number))
                process.feed()
                deadline += loop.time() - stopped
        memory.finish(figures)
    finally:
        for task in side:
            task.cancel()
        await asyncio.wait(side)
    world.quiet()
    await process.stop_feeding()
    await process.drain(config.drain_seconds)
    # one more restart, faults off: whatever is left unfinished now is resumed one last time
    await process.stop()
    process = await Process.start(world, next(number))
    await process.drain(config.drain_seconds)
    await _audit(world, process, figures)
    await process.stop()
    world.forget_records()
    figures.fds_end = await settled_fds()
    figures.rss_end_mb = rss_mb()
    figures.peak_rss_mb = max(peak_rss_mb(), figures.rss_end_mb)
    figures.seconds = loop.time() - began
    return figures


def _reason(run: Run) -> str:
    """The step and the first clause of the user-safe sentence (details in brackets go)."""
    if run.failure is None:
        return "no reason saved"
    message = run.failure.message
    if not message.startswith("not posted"):
        message = message.split(" (", 1)[0].rstrip(".")
    return f"{run.failure.state}: {message}"[:150]


async def _audit(world: World, process: Process, figures: Figures) -> None:
    store = process.store
    ledger = world.ledger
    runs = {run.id: run for run in await store.list_runs(limit=1_000_000)}
    figures.runs_started = len(runs)
    figures.scheduled = sum(r.job.requested_by == SCHEDULE_REQUESTER for r in runs.values())
    figures.requested = figures.runs_started - figures.scheduled
    figures.resumed = ledger.resumed
    figures.restarts = ledger.restarts
    figures.faults = ledger.faults
    vanished = sorted(ledger.runs - set(runs))
    stuck = sorted(run_id for run_id, run in runs.items() if not run.state.finished)
    figures.lost_runs = [*vanished, *stuck]
    figures.lost = len(figures.lost_runs)
    for run in runs.values():
        if run.state.finished:
            figures.finished[run.state.value] += 1
        if run.state is RunState.FAILED:
            figures.failed_reasons[_reason(run)] += 1
    remote: Counter[tuple[str, Platform]] = Counter()
    for platform, fake in world.platforms.items():
        for copy in fake.held:
            remote[(copy.run_id, platform)] += 1
    records: Counter[tuple[str, Platform]] = Counter()
    for run_id in runs:
        for post in await store.posts_for_run(run_id):
            records[(run_id, post.platform)] += 1
            figures.posts[post.state.value] += 1
    figures.duplicate_posts = sum(n - 1 for n in remote.values() if n > 1) + sum(
        n - 1 for n in records.values() if n > 1
    )
    figures.published_without_post = sum(
        1
        for run in runs.values()
        if run.state is RunState.PUBLISHED and any(remote[(run.id, p)] == 0 for p in SOAK_PLATFORMS)
    )
    figures.duplicate_slots = sum(len(ids) - 1 for ids in ledger.slot_runs.values() if len(ids) > 1)
    # The store is the truth here: a stop can land after a claim committed and before the soak
    # noted it. Resume claims (`resume:RUN:...`) are the bot's, not schedule slots.
    slots = await store.db.fetchall(
        "SELECT character_name, slot, run_id FROM schedule_slots WHERE slot NOT LIKE ?",
        ("resume:%",),
    )
    figures.slots_without_run = sum(1 for _, _, run_id in slots if run_id not in runs)
    claimed_runs = {run_id for _, _, run_id in slots}
    figures.scheduled_without_slot = sum(
        1
        for run in runs.values()
        if run.job.requested_by == SCHEDULE_REQUESTER and run.id not in claimed_runs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--mysql",
        nargs="?",
        const="mysql://root@127.0.0.1:3306",
        default=None,
        metavar="URL",
        help="store on this MySQL/MariaDB server (a fresh database, dropped after)",
    )
    parser.add_argument("--restart-every", type=float, default=5.0)
    parser.add_argument("--fault-every", type=float, default=0.25)
    parser.add_argument("--verbose", action="store_true", help="log warnings to stderr")
    parser.add_argument(
        "--trace-growth",
        action="store_true",
        help="list the project's lines whose allocations grew over the second half "
        "(tracemalloc; slower)",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger().handlers[0].setLevel(logging.CRITICAL + 1)
    config = SoakConfig(
        seconds=args.seconds,
        seed=args.seed,
        mysql_url=args.mysql,
        restart_every=args.restart_every,
        fault_every=args.fault_every,
        trace_growth=args.trace_growth,
    )
    started = time.perf_counter()
    figures = asyncio.run(soak(config))
    print(figures.report())
    print(f"wall time {time.perf_counter() - started:.1f} s, seed {args.seed}")
    print(figures.line())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
