"""Domain records: Job, Run and what a run collects (frozen dataclasses).

A Run is saved after every step; `to_json` / `from_json` are its storage form, and
`upgrade_run_data` reads the forms older versions wrote. Imports nothing from the project but
the error tree, the one definition of media kinds (`strategies.media`) and a narrated run's
script (`strategies.narration`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any, Self

from pipeline.errors import RunError
from strategies.media import MediaKind as MediaKind
from strategies.narration import Scene as Scene
from strategies.narration import Script as Script

if TYPE_CHECKING:
    from pydantic import TypeAdapter


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (naive datetimes are not used anywhere)."""
    return datetime.now(UTC)


def new_run_id() -> str:
    """A short id a person can type: 12 hex characters."""
    return secrets.token_hex(6)


class Platform(StrEnum):
    INSTAGRAM = "instagram"
    TWITTER = "twitter"
    BLUESKY = "bluesky"
    FACEBOOK = "facebook"
    THREADS = "threads"


class RunState(StrEnum):
    """Where a run stands. The order of the first members is the order of the steps."""

    CREATED = "created"
    PROMPTED = "prompted"
    DESCRIBED = "described"
    GENERATED = "generated"
    SCORED = "scored"
    CAPTIONED = "captioned"
    AWAITING_REVIEW = "awaiting_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    PUBLISHING = "publishing"
    #: approved, its posts waiting in the publish queue for their slots (`pipeline.publish.queue`)
    QUEUED = "queued"
    PUBLISHED = "published"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True when nothing more happens to the run by itself."""
        return self in _FINISHED


_FINISHED = frozenset(
    {RunState.REJECTED, RunState.EXPIRED, RunState.PUBLISHED, RunState.FAILED, RunState.CANCELLED}
)


class PostState(StrEnum):
    """A post record's state: written as POSTING before the remote call, never posted twice."""

    POSTING = "posting"
    POSTED = "posted"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Job:
    """What was asked: which character, optionally prompt / type / method, and by whom."""

    character: str
    requested_by: str = "cli"
    prompt: str | None = None
    generation_type: str | None = None
    prompt_method: str | None = None
    seed: int | None = None
    quick: bool = False
    publish: bool = True
    #: input images given with the job (paths), used instead of the character's input_dir
    input_images: tuple[str, ...] = ()
    #: the style to use instead of the weighted pick from the character's `style_weights`
    style: str | None = None
    #: how many per description (per input image) the first stage makes, instead of the
    #: character's `images_per_description` / `images_per_input`
    count: int | None = None
    #: the negative prompt, set on the workflow's negative text node
    negative: str | None = None


@dataclass(frozen=True)
class Choices:
    """Every random choice of a run, with the seed they came from, so a run can be replayed."""

    seed: int
    character: str
    generation_type: str
    prompt_method: str
    template: str
    style: str
    workflows: dict[str, str] = field(default_factory=dict)
    #: the weights the picks followed when the character learns (`pipeline.learning`), per
    #: `generation` weights key; empty when they were the YAML's
    weights: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class MediaItem:
    """One generated file, relative to the run's folder, with its score when scored."""

    path: str
    kind: MediaKind
    description_index: int
    stage: str = "final"
    score: float | None = None
    reason: str | None = None
    kept: bool = True
    #: the review round that made it: 1 for the run's first set, n after the (n-1)-th reroll
    attempt: int = 1
    #: the index into Run.media of the image it is a variation of ("more like #N")
    variation_of: int | None = None
    #: the file it was upscaled from, once the upscale workflow replaced it (`path` is the
    #: upscaled file then)
    upscaled_from: str | None = None


@dataclass(frozen=True)
class ReviewTicket:
    """Where a review waits (channel and message ids), saved so a restart can find it again."""

    channel_id: int
    message_ids: tuple[int, ...]
    posted_at: datetime
    deadline: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """A reviewer's answer: approved or not, which media (indexes into Run.media), by whom."""

    approved: bool
    selected: tuple[int, ...]
    by: str
    at: datetime
    captions: dict[str, str] = field(default_factory=dict)
    #: the reviewer asked for the chosen images to go through the character's upscale workflow
    upscale: bool = False


class ActionKind(StrEnum):
    """What a reviewer can ask of an open review besides a decision."""

    #: new media for the same descriptions with new seeds: the next attempt
    REROLL = "reroll"
    #: variations of one image, added to the review
    MORE_LIKE = "more_like"
    #: approve, with the chosen images upscaled before publishing (offered as a reaction;
    #: carried out as `Decision.upscale`)
    UPSCALE = "upscale"


@dataclass(frozen=True)
class ReviewAction:
    """A reviewer's request on an open review that makes more media (a reroll, or variations
    of one image). Saved on the run before its work starts, so a restart carries it on."""

    kind: ActionKind
    by: str
    at: datetime
    #: MORE_LIKE: the index into Run.media of the image to vary
    index: int | None = None


@dataclass(frozen=True)
class PostAttempt:
    at: datetime
    outcome: str
    message: str = ""


@dataclass(frozen=True)
class PostRecord:
    """One post of one run on one platform; unique per (run, platform)."""

    run_id: str
    platform: Platform
    account: str
    state: PostState
    remote_id: str | None = None
    url: str | None = None
    error: str | None = None
    attempts: tuple[PostAttempt, ...] = ()
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


#: the step a run works on in each state: a failure in `described` is a failure to generate
STEP_OF_STATE = {
    "created": "prompt",
    "prompted": "describe",
    "described": "generate",
    "generated": "score",
    "scored": "caption",
    "captioned": "review",
    "awaiting_review": "review",
    "approved": "publish",
    "publishing": "publish",
}


@dataclass(frozen=True)
class RunFailure:
    """Why a run failed. `state` is the state it was in (a resume goes back to it; `doing`
    names the step); `message` a user-safe sentence; `cause` the detail, user-safe too
    (ComfyUI's node, class and message); `retryable` whether trying again unchanged can help;
    `bad_input` whether a file, setting or argument was to blame rather than a service. Runs
    saved before the last three read as a retryable service failure without detail; runs saved
    when `state` was called `step` read as well (`upgrade_run_data`)."""

    state: RunState
    message: str
    cause: str = ""
    retryable: bool = True
    bad_input: bool = False

    @property
    def doing(self) -> str:
        """The step that failed, as people name it: `generate` for a run failed in `described`."""
        return STEP_OF_STATE.get(self.state, self.state.value)

    def describe(self) -> str:
        """`failed at generate: <message> <cause>; <whether a retry helps>`, one paragraph."""
        text = f"failed at {self.doing}: {self.message}"
        if self.cause:
            text = f"{text.rstrip('.')}: {self.cause}"
        if not self.retryable:
            text = f"{text.rstrip('.')}. Retrying will not help until that is fixed."
        return text


@dataclass(frozen=True)
class ReviewNotes:
    """What an open review has gathered so far: caption edits and whether the reminder went
    out. Kept per ticket (`message_id` is its first message): a review posted again after
    expiry starts afresh."""

    message_id: int
    captions: dict[str, str] = field(default_factory=dict)
    reminded: bool = False


class StickerState(StrEnum):
    """Where one sticker of a pack stands on Discord: UPLOADING is written before the upload,
    so a sticker is never uploaded twice (a lost answer is looked for in the guild's list)."""

    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    #: refused for good as it is (no free slot, a file Discord will not take); a retry tries
    #: again, since slots can be freed
    REFUSED = "refused"
    #: a transient failure (a timeout, Discord's 5xx): a retry tries again
    FAILED = "failed"


@dataclass(frozen=True)
class Sticker:
    """One sticker of a sticker pack as the language model listed it, and its upload.

    `name` (2-30 characters), `tags` (Discord's autocomplete words, at most 200 characters)
    and `expression` (its description on Discord) go to Discord; the prompt it was drawn from
    is the run's description of the same index."""

    name: str
    tags: str
    expression: str = ""
    state: StickerState = StickerState.PENDING
    sticker_id: str | None = None
    #: a user-safe sentence: why it was refused or failed
    error: str | None = None


@dataclass(frozen=True)
class StagePick:
    """A person's pick between a strategy's stages (`review_between_stages`): the drafts shown
    (paths relative to the run's folder, best by score first), how many go on, where the pick
    waits, and once answered which drafts (indexes into `drafts`) and by whom. Saved before it
    is asked, so a restart waits on the same pick, and a run picked already never asks again."""

    stage: str
    drafts: tuple[MediaItem, ...]
    keep: int
    ticket: ReviewTicket | None = None
    chosen: tuple[int, ...] | None = None
    #: who picked: a reviewer's name, "auto", or "timeout" (nobody in time: the best by score)
    by: str | None = None


@dataclass(frozen=True)
class PrunedMark:
    """A run's media were removed (`pipeline.retention`): when, after how many days, how much."""

    at: datetime
    after_days: float
    freed: int


@dataclass(frozen=True)
class Run:
    """One run of the pipeline, saved after every step."""

    id: str
    job: Job
    state: RunState = RunState.CREATED
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    character: str = ""
    choices: Choices | None = None
    prompt: str | None = None
    descriptions: tuple[str, ...] = ()
    media: tuple[MediaItem, ...] = ()
    captions: dict[str, str] = field(default_factory=dict)
    ticket: ReviewTicket | None = None
    decision: Decision | None = None
    failure: RunFailure | None = None
    #: who is in it: the character, or the member of its group picked for this run
    subject: str | None = None
    #: the second character of a two-character idea
    partner: str | None = None
    #: the news item a news idea is about
    news_id: int | None = None
    #: what scoring concluded, in one sentence ("2 of 4 images reached the threshold 0.6.")
    scoring_note: str | None = None
    #: what the open review has gathered so far (the bot's reviewer writes it)
    review_notes: ReviewNotes | None = None
    #: set once its media were removed to free the disk
    pruned: PrunedMark | None = None
    #: when each waiting post goes out (platform -> UTC time), while the run is queued
    queued: dict[str, datetime] = field(default_factory=dict)
    #: the review round: 1, then 2, 3 ... after each reroll (its media carry the number)
    attempt: int = 1
    #: a reviewer's request being carried out (saved before its work starts)
    action: ReviewAction | None = None
    #: what the open review offers besides a decision (the pipeline sets it by the character)
    offers: tuple[ActionKind, ...] = ()
    #: what its videos sound like, for the sound node (MMAudio) of a video workflow that has
    #: one; None when no workflow of the run has such a node
    sound_prompt: str | None = None
    #: the pick between stages, while it is asked and once it was answered
    stage_pick: StagePick | None = None
    #: a narrated run's script, with each scene's finished parts (text2longvideo)
    script: Script | None = None
    #: a sticker pack's stickers, one per description, with their uploads to Discord
    stickers: tuple[Sticker, ...] = ()

    @classmethod
    def new(cls, job: Job, *, run_id: str | None = None) -> Self:
        return cls(id=run_id or new_run_id(), job=job, character=job.character)

    def advance(self, state: RunState, **changes: Any) -> Self:
        """A copy in `state` with `changes` applied and updated_at set to now."""
        return replace(self, state=state, updated_at=utcnow(), **changes)

    def shown(self) -> tuple[int, ...]:
        """Indexes into `media` of what the review shows, in order (number n is the n-th):
        the kept media of the current attempt, variations included."""
        return tuple(
            index
            for index, item in enumerate(self.media)
            if item.kept and item.attempt == self.attempt
        )

    def to_json(self) -> str:
        return _run_adapter().dump_json(self).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Run:
        """A stored run, in the current form or one an older version wrote."""
        if _OLD_FORM.search(text if isinstance(text, str) else text.decode()):
            data = json.loads(text)
            if isinstance(data, dict) and upgrade_run_data(data):
                text = json.dumps(data)
        return _run_adapter().validate_json(text)


# The storage forms are built on first use, once: pydantic and the schemas cost about 100 ms
# of start-up that a command touching no run (`--help`) should not pay.
@cache
def _run_adapter() -> TypeAdapter[Run]:
    from pydantic import TypeAdapter

    return TypeAdapter(Run)


@cache
def _attempts_adapter() -> TypeAdapter[tuple[PostAttempt, ...]]:
    from pydantic import TypeAdapter

    return TypeAdapter(tuple[PostAttempt, ...])


def build_storage_forms() -> None:
    """Build the storage forms now (blocking, tens of ms: call it in a thread), so the first
    run saved or read does not build them on the event loop."""
    _run_adapter()
    _attempts_adapter()


# ------------------------------------------------------------ runs stored by older versions
#: the keys only the old forms have (`"extra":`, a failure's `"step":`): a run without them
#: is read as it is (a prompt that happens to contain them costs one more parse, no more)
_OLD_FORM = re.compile(r'"(?:extra|step)":')


def upgrade_run_data(data: dict[str, Any]) -> bool:
    """Bring a stored run (its JSON as a dict) from the form written before schema version 3
    to the current one, in place; True when anything changed.

    Then a run kept its odd facts in `extra` (subject, partner, news_id as text, scoring,
    review_notes, media_pruned, input_images): the known ones move to their fields (the input
    images to the job), malformed or unknown ones are dropped. A failure's `step` is now its
    `state`. Works on plain JSON, never on `Run`, so it keeps its meaning as `Run` changes (the
    schema migration uses it too)."""
    changed = False
    extra = data.pop("extra", None)
    if extra is not None:
        changed = True
    if isinstance(extra, dict):
        for old, new in (
            ("subject", "subject"),
            ("partner", "partner"),
            ("scoring", "scoring_note"),
        ):
            if isinstance(extra.get(old), str):
                _fill(data, new, extra[old])
        news_id = extra.get("news_id")
        if isinstance(news_id, int | str) and str(news_id).isdigit():
            _fill(data, "news_id", int(news_id))
        notes = _old_notes(extra.get("review_notes"))
        if notes is not None:
            _fill(data, "review_notes", notes)
        pruned = _old_pruned(extra.get("media_pruned"))
        if pruned is not None:
            _fill(data, "pruned", pruned)
        images = extra.get("input_images")
        job = data.get("job")
        if isinstance(images, list) and images and isinstance(job, dict):
            _fill(job, "input_images", [str(p) for p in images])
    failure = data.get("failure")
    if isinstance(failure, dict) and "step" in failure:
        step = failure.pop("step")
        # a state no version knows (hand-edited, say) reads as failed: shown, never resumed
        known = step in {state.value for state in RunState}
        _fill(failure, "state", step if known else RunState.FAILED.value)
        changed = True
    return changed


def _fill(data: dict[str, Any], key: str, value: object) -> None:
    """Set `key` unless it already holds a value (a field the new form wrote wins)."""
    if data.get(key) is None:
        data[key] = value


def _old_notes(raw: object) -> dict[str, Any] | None:
    """`extra["review_notes"]` as the `review_notes` field, or None when it is not readable."""
    if not isinstance(raw, dict) or not isinstance(raw.get("message_id"), int):
        return None
    captions = raw.get("captions")
    return {
        "message_id": raw["message_id"],
        "captions": {str(k): v for k, v in captions.items() if isinstance(v, str)}
        if isinstance(captions, dict)
        else {},
        "reminded": raw.get("reminded") is True,
    }


def _old_pruned(raw: object) -> dict[str, Any] | None:
    """`extra["media_pruned"]` as the `pruned` field, or None when it is not readable."""
    if not isinstance(raw, dict):
        return None
    try:
        return {
            "at": datetime.fromisoformat(str(raw["at"])).isoformat(),
            "after_days": float(raw.get("after_days", 0)),
            "freed": int(raw.get("freed", 0)),
        }
    except (KeyError, ValueError, TypeError):
        return None


def post_attempts_to_json(attempts: tuple[PostAttempt, ...]) -> str:
    return _attempts_adapter().dump_json(attempts).decode()


def post_attempts_from_json(text: str | bytes) -> tuple[PostAttempt, ...]:
    return _attempts_adapter().validate_json(text)


# ------------------------------------------------------------ pruned media (pipeline.retention)
def pruned_sentence(run: Run) -> str | None:
    """The one sentence that says a run's media were removed, or None when they were not."""
    mark = run.pruned
    if mark is None:
        return None
    return (
        f"run {run.id}'s media were removed on {mark.at:%Y-%m-%d} after {mark.after_days:g} "
        "days; start a new run"
    )


def refuse_if_pruned(run: Run) -> None:
    """Raise RunError (its sentence safe for Discord) when `run`'s media were pruned."""
    sentence = pruned_sentence(run)
    if sentence is not None:
        raise RunError(sentence)


# ------------------------------------------------------- retrying a run failed at publishing
def retry_acts_on(posts: Sequence[PostRecord]) -> bool:
    """Whether a retry of a run failed at publishing would try any of these posts: a failed
    one is posted again, one left `posting` by a crash is looked for on the account."""
    return any(post.state in (PostState.FAILED, PostState.POSTING) for post in posts)


def retry_changes_nothing(run: Run, posts: Sequence[PostRecord]) -> bool:
    """Whether retrying (resuming) `run` would change nothing: it failed at publishing and its
    posts that are not online are all uncertain, which are never posted again by themselves
    (a person settles each one first). Both `/retry` and `resume` refuse such a run."""
    failure = run.failure
    if run.state is not RunState.FAILED or failure is None or failure.doing != "publish":
        return False
    uncertain = any(post.state is PostState.UNCERTAIN for post in posts)
    return uncertain and not retry_acts_on(posts)
