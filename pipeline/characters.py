"""Character files: YAML -> a validated, frozen `Character`, and seeded weighted picks.

Every problem in a file is reported at once, each as `file:line: key.path: message`. Shape and
types are checked by pydantic; names (strategies, templates, styles, workflow files) by
`_check_names`. Imports domain modules and what `strategies` declare (names, needs).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from random import Random
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

import strategies
from pipeline.errors import CharacterError, CharacterNotFound, Problem, RunError
from pipeline.models import Platform, Run, RunState
from pipeline.prompts.library import PROMPT_METHODS, TemplateLibrary
from pipeline.slots import NOW, PlatformSlots, PublishBlock
from strategies import STRATEGY_NAMES
from strategies.base import MAIN

#: libyaml's loader when PyYAML has it: 20x faster than the pure-Python one, which holds the GIL
#: (and so slows the event loop) for ~45 ms per file at every run's start; same nodes and marks
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: a character's name is its file's stem: letters, digits, '_' and '-', nothing that walks paths
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

Weights = dict[str, float]

#: a file that expands (through YAML aliases) to more values than this is refused: no character
#: needs it, and walking it would take minutes ("billion laughs")
MAX_VALUES = 20_000


def pick(weights: Mapping[str, float], rng: Random) -> str:
    """One name, with probability proportional to its weight; names in sorted order so the
    same seed gives the same pick whatever the file's key order."""
    names = sorted(name for name, weight in weights.items() if weight > 0)
    if not names:
        raise ValueError("no choice has a positive weight")
    return rng.choices(names, weights=[weights[name] for name in names], k=1)[0]


# ---------------------------------------------------------------------------- file shape


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CharacterInfo(_Model):
    name: str = Field(min_length=1, max_length=100)
    group_name: str = ""
    description: str = ""


class Variations(_Model):
    """`generation.variations`: what "more like #N" on a review makes."""

    #: seed: the image's description again with new seeds; img2img: a light image-to-image
    #: from the image (with the character's workflow for `strategies.IMAGE_FROM_IMAGE`)
    mode: Literal["seed", "img2img"] = "seed"
    count: int = Field(default=3, ge=1, le=8)
    #: how far img2img may move from the image (0..1; low keeps it close)
    denoise: float = Field(default=0.35, gt=0, le=1)


class Upscale(_Model):
    """`generation.upscale`: the workflow chosen images go through before publishing."""

    workflow: str = Field(min_length=1)
    #: on_request: when a reviewer approves with ⬆️; always: every approval
    when: Literal["on_request", "always"] = "on_request"


class Generation(_Model):
    output_dir: str = ""
    generation_type_weights: Weights
    workflows: dict[str, str] = Field(default_factory=dict)
    similarity_threshold: float = Field(default=0.5, ge=0, le=1)
    #: when no image reaches the threshold: keep the best K (0: the run fails instead)
    keep_best_when_none_pass: int = Field(default=1, ge=0, le=20)
    prompt_method_weights: Weights = Field(default_factory=lambda: {"arbitrary": 1.0})
    image_system_prompt_weights: Weights = Field(
        default_factory=lambda: {"stable_diffusion_prompt": 1.0}
    )
    video_system_prompt_weights: Weights = Field(default_factory=lambda: {"video_description": 1.0})
    style_weights: Weights = Field(default_factory=lambda: {"": 1.0})
    descriptions: int = Field(default=2, ge=1, le=10)
    #: the weights above are priors that follow what reviewers approve and audiences engage
    #: with (pipeline.learning); removing it goes back to them exactly
    learn: bool = False
    variations: Variations = Field(default_factory=Variations)
    upscale: Upscale | None = None

    @field_validator("similarity_threshold", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool) and not 0 <= value <= 1:
            raise ValueError("must be between 0 and 1")
        return value


class PlatformConfig(_Model):
    enabled: bool = False
    #: which credentials to use: a name the README's credentials section resolves
    credentials: str = ""
    prefix: str = ""
    #: how an image outside the platform's aspect limits is fitted
    fit: Literal["pad", "crop"] = "pad"

    @model_validator(mode="after")
    def _credentials_when_enabled(self) -> PlatformConfig:
        if self.enabled and not self.credentials:
            raise ValueError("an enabled platform needs `credentials`")
        return self


class SocialMedia(_Model):
    default_hashtags: list[str] = Field(default_factory=list)
    platforms: dict[Platform, PlatformConfig] = Field(default_factory=dict)

    @field_validator("default_hashtags")
    @classmethod
    def _hashtags(cls, tags: list[str]) -> list[str]:
        cleaned = []
        for tag in tags:
            text = tag.strip().lstrip("#")
            if not text or any(ch.isspace() for ch in text):
                raise ValueError(f"hashtag {tag!r} must be one word")
            cleaned.append("#" + text)
        return cleaned


class NodeUpdate(_Model):
    """One entry of `custom_node_updates`: which node(s), and the inputs to set on them."""

    node_type: str | None = None
    title: str | None = None
    id: str | None = None
    inputs: dict[str, Any]

    @model_validator(mode="after")
    def _one_selector(self) -> NodeUpdate:
        chosen = [k for k in ("node_type", "title", "id") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError("needs exactly one of node_type, title or id")
        if not self.inputs:
            raise ValueError("inputs must set at least one input")
        return self

    def as_mapping(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class PinnedSeed(_Model):
    """One entry of `pinned_seeds`: which node(s), by class, title or id, keep this seed
    instead of a fresh one per prompt (its `seed` or `noise_seed` input)."""

    node_type: str | None = None
    title: str | None = None
    id: str | None = None
    #: ComfyUI's samplers take seeds up to 2**64 - 1
    seed: int = Field(ge=0, le=2**64 - 1)

    @model_validator(mode="after")
    def _one_selector(self) -> PinnedSeed:
        chosen = [k for k in ("node_type", "title", "id") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError("needs exactly one of node_type, title or id")
        return self

    def selector(self) -> tuple[str, str]:
        """(`node_type` | `title` | `id`, the value)."""
        for key in ("node_type", "title", "id"):
            value = getattr(self, key)
            if value:
                return key, str(value)
        raise AssertionError("validated to have one selector")


class StageParams(_Model):
    """One stage's settings in `additional_params` (the strategy's own stage, or a section)."""

    workflow: str | None = None
    images_per_description: int | None = Field(default=None, ge=1, le=16)
    images_per_input: int | None = Field(default=None, ge=1, le=16)
    denoise: float | None = Field(default=None, gt=0, le=1)
    custom_node_updates: list[NodeUpdate] = Field(default_factory=list)
    pinned_seeds: list[PinnedSeed] = Field(default_factory=list)


class StrategyParams(StageParams):
    videos_per_description: int | None = Field(default=None, ge=1, le=8)
    input_dir: str | None = None
    #: how many of the best images of the first stage go on to the second
    keep_top: int | None = Field(default=None, ge=1, le=16)
    #: a person picks the first stage's drafts to refine (true), or the best `keep_top` by
    #: score go on (false, or auto: as without a person); for strategies that can stop
    #: between their stages (`Needs.pick_after`)
    review_between_stages: bool | Literal["auto"] | None = None

    @field_validator("review_between_stages", mode="before")
    @classmethod
    def _true_false_or_auto(cls, value: object) -> object:
        if value is None or isinstance(value, bool) or value == "auto":
            return value
        raise ValueError(f"must be true, false or auto (got {value!r})")

    first_stage: StageParams | None = None
    second_stage: StageParams | None = None

    def section(self, stage: str) -> StageParams | None:
        """The settings section of a strategy's stage (`first_stage`...), None for `main`."""
        value = getattr(self, stage, None) if stage != MAIN else None
        return value if isinstance(value, StageParams) else None


class AdditionalParams(_Model):
    general: StrategyParams = Field(default_factory=StrategyParams)
    strategies: dict[str, StrategyParams] = Field(default_factory=dict)


class QuietHours(_Model):
    start: int = Field(ge=0, le=23)
    end: int = Field(ge=0, le=23)

    def contains(self, hour: int) -> bool:
        if self.start <= self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


class Chance(_Model):
    """Probability of running on a due tick: base + growth_per_hour x hours since the last
    success, capped at `maximum` (the reference scheduler's rising chance)."""

    base: float = Field(ge=0, le=1)
    growth_per_hour: float = Field(default=0.0, ge=0, le=1)
    maximum: float = Field(default=1.0, ge=0, le=1)

    def at(self, hours_since_success: float | None) -> float:
        if hours_since_success is None:
            return self.maximum
        return min(self.maximum, self.base + self.growth_per_hour * hours_since_success)


class Schedule(_Model):
    enabled: bool = False
    timezone: str = "UTC"
    hours: list[int] | None = None
    every_hours: int | None = Field(default=None, ge=1, le=24)
    quiet_hours: QuietHours | None = None
    chance: Chance | None = None
    daily_budget: dict[Platform, int] = Field(default_factory=dict)

    @field_validator("hours")
    @classmethod
    def _hours(cls, hours: list[int] | None) -> list[int] | None:
        if hours is not None:
            bad = [h for h in hours if not 0 <= h <= 23]
            if bad:
                raise ValueError(f"must be between 0 and 23 (got {bad[0]})")
            return sorted(set(hours))
        return hours

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r} (use a name like Europe/Berlin)"
            ) from None
        return name

    @field_validator("daily_budget")
    @classmethod
    def _budget(cls, budget: dict[Platform, int]) -> dict[Platform, int]:
        for platform, count in budget.items():
            if count < 0:
                raise ValueError(f"{platform.value} budget must not be negative")
        return budget

    @model_validator(mode="after")
    def _when(self) -> Schedule:
        if self.hours is not None and self.every_hours is not None:
            raise ValueError("give either hours or every_hours, not both")
        if self.enabled and self.hours is None and self.every_hours is None:
            raise ValueError("an enabled schedule needs hours or every_hours")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class LongVideo(_Model):
    """`longvideo`: how text2longvideo narrates (`strategies.text2longvideo`)."""

    #: the whole video's length; cut to the enabled platforms' limit (reels 90 s, X 140 s)
    seconds: float = Field(default=45.0, ge=5, le=600)
    #: one scene's length: the script has seconds / scene_seconds scenes (at most MAX_SCENES)
    scene_seconds: float = Field(default=5.0, ge=2, le=30)
    #: `openai`: the speech endpoint in the settings (SPEECH_URL); `comfyui`: `speech_workflow`
    speech: Literal["openai", "comfyui"] = "openai"
    #: the voice for the speech endpoint (empty: SPEECH_VOICE)
    voice: str = Field(default="", max_length=100)
    #: the ComfyUI text-to-speech workflow, for `speech: comfyui`
    speech_workflow: str = "workflows/text2longvideo_speech.json"


class StickerSettings(_Model):
    """The `stickers` section: a sticker pack's size, background removal and uploads."""

    #: how many stickers the language model lists (one review message shows them all with
    #: the contact sheet: Discord takes 10 files a message)
    count: int = Field(default=8, ge=1, le=9)
    #: an animated PNG (a small hop) instead of a still one
    animated: bool = False
    #: "comfyui": the `remove_background` workflow; "key": a plain background keyed out
    background: Literal["comfyui", "key"] = "key"
    #: the background-removal workflow (background comfyui)
    remove_background: str = "workflows/remove_background.json"
    #: how far (0-255 per channel) from the border colour a pixel is still keyed out
    tolerance: int = Field(default=40, ge=0, le=255)


class CharacterFile(_Model):
    """The whole file as written."""

    character: CharacterInfo
    generation: Generation
    social_media: SocialMedia = Field(default_factory=SocialMedia)
    additional_params: AdditionalParams = Field(default_factory=AdditionalParams)
    schedule: Schedule = Field(default_factory=Schedule)
    publish: PublishBlock = Field(default_factory=dict)
    longvideo: LongVideo = Field(default_factory=LongVideo)
    stickers: StickerSettings = Field(default_factory=StickerSettings)


# ---------------------------------------------------------------------------- the character


@dataclass(frozen=True)
class Character:
    """A validated character: its key (file stem), where it came from, and its settings."""

    key: str
    path: Path
    root: Path
    spec: CharacterFile

    @property
    def name(self) -> str:
        return self.spec.character.name

    @property
    def group_name(self) -> str:
        return self.spec.character.group_name

    @property
    def generation(self) -> Generation:
        return self.spec.generation

    @property
    def schedule(self) -> Schedule:
        return self.spec.schedule

    def publish_rule(self, platform: Platform) -> PlatformSlots:
        """When a post on `platform` goes out (`pipeline.slots`): `now` unless `publish` says."""
        return self.spec.publish.get(platform) or NOW

    @property
    def output_dir(self) -> Path:
        configured = self.generation.output_dir or f"output/{self.key}"
        return self.root / configured

    def enabled_platforms(self) -> dict[Platform, PlatformConfig]:
        return {p: c for p, c in self.spec.social_media.platforms.items() if c.enabled}

    def params_for(self, strategy: str) -> StrategyParams:
        """`additional_params.general`, overridden key by key by `strategies.<strategy>`."""
        general = self.spec.additional_params.general
        specific = self.spec.additional_params.strategies.get(strategy)
        if specific is None:
            return general
        merged = general.model_dump(exclude_unset=True) | specific.model_dump(exclude_unset=True)
        return StrategyParams.model_validate(merged)

    def workflow_path(self, strategy: str, stage: str = MAIN) -> Path:
        """The workflow file for a strategy's stage (`main` for a one-stage strategy).

        A stage's own `workflow` wins; else a stage that borrows another strategy's workflow
        (the first stage borrows text2img's) falls back to `generation.workflows.<that one>`,
        and any other (like a one-stage strategy) to the strategy's `workflow`, then
        `generation.workflows.<strategy>`.
        """
        params = self.params_for(strategy)
        section = params.section(stage)
        borrows = strategies.needs(strategy).stage(stage).borrows
        workflows = self.generation.workflows
        if borrows is not None:
            fallback = workflows.get(borrows)
        else:
            fallback = params.workflow or workflows.get(strategy)
        name = (section.workflow if section else None) or fallback
        if name is None:
            raise KeyError(f"character {self.key!r} names no workflow for {strategy}")
        return self.root / name

    def unrunnable_reason(self, strategy: str, *, with_image: bool = False) -> str | None:
        """Why this character cannot run `strategy` (no workflow for a stage, no video
        template, no input images folder unless the job brings its image), or None when it
        can."""
        if strategy not in STRATEGY_NAMES:
            return f"{strategy[:32]!r} is not a generation type"
        needs = strategies.needs(strategy)
        for stage in needs.stages:
            try:
                self.workflow_path(strategy, stage.name)
            except KeyError:
                return f"it names no workflow for {strategy}{_where(stage.name)}"
        if needs.video and not self.generation.video_system_prompt_weights:
            return f"{strategy} needs video_system_prompt_weights"
        if needs.input_images and not with_image and not self.params_for(strategy).input_dir:
            return f"{strategy} needs additional_params input_dir (the input images)"
        return None

    def runnable_types(self) -> tuple[str, ...]:
        """The generation types this character can run, in the README's order."""
        return tuple(s for s in STRATEGY_NAMES if self.unrunnable_reason(s) is None)

    def refuse_unrunnable(self, strategy: str, *, with_image: bool = False) -> None:
        """RunError (one sentence, safe for Discord) when this character cannot run
        `strategy`: asked for before a run is created, so none is made to fail."""
        reason = self.unrunnable_reason(strategy, with_image=with_image)
        if reason is not None:
            can = ", ".join(self.runnable_types()) or "nothing"
            raise RunError(f"{self.key} cannot make {strategy[:32]}: {reason}; it can make {can}")

    def refuse_unrunnable_resume(self, run: Run) -> None:
        """RunError when resuming `run` would have to make media with a type this character
        can no longer run (its workflow went from the file): it would only fail again."""
        if run.media or run.state in _MEDIA_MADE:
            return
        wanted = run.choices.generation_type if run.choices else run.job.generation_type
        if wanted:
            self.refuse_unrunnable(wanted, with_image=bool(run.job.input_images))

    def with_weights(self, weights: Mapping[str, Mapping[str, float]]) -> Character:
        """This character with some `generation` weights keys replaced (learned weights)."""
        generation = self.generation.model_copy(update={k: dict(v) for k, v in weights.items()})
        spec = self.spec.model_copy(update={"generation": generation})
        return replace(self, spec=spec)

    def pick_generation_type(self, rng: Random) -> str:
        return pick(self.generation.generation_type_weights, rng)

    def pick_prompt_method(self, rng: Random) -> str:
        return pick(self.generation.prompt_method_weights, rng)

    def pick_template(self, rng: Random, *, video: bool) -> str:
        gen = self.generation
        return pick(
            gen.video_system_prompt_weights if video else gen.image_system_prompt_weights, rng
        )

    def pick_style(self, rng: Random) -> str:
        return pick(self.generation.style_weights, rng)


#: states whose media are made: resuming them needs no workflow
_MEDIA_MADE = frozenset(
    {
        RunState.GENERATED,
        RunState.SCORED,
        RunState.CAPTIONED,
        RunState.AWAITING_REVIEW,
        RunState.APPROVED,
        RunState.PUBLISHING,
        RunState.QUEUED,
        RunState.EXPIRED,
    }
)


# ---------------------------------------------------------------------------- loading


class _TooBig(Exception):
    """The YAML graph refers to itself or expands past MAX_VALUES; `line` is where."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _line_map(
    node: yaml.Node,
    path: tuple[str | int, ...],
    out: dict[tuple[str | int, ...], int],
    dupes: list[tuple[tuple[str | int, ...], int]],
    inside: tuple[int, ...] = (),
) -> None:
    """Record the 1-based line of every key and item below `node`, and duplicate keys.

    An alias that contains itself, or a graph that expands past MAX_VALUES, raises `_TooBig`
    (yaml.safe_load would build a cyclic value, and walking the expansion would never end)."""
    line = node.start_mark.line + 1
    if id(node) in inside:
        raise _TooBig(line, "an alias refers to its own anchor (the value would never end)")
    if len(out) > MAX_VALUES:
        raise _TooBig(line, f"the file expands to more than {MAX_VALUES} values (aliases?)")
    out.setdefault(path, line)
    inside = (*inside, id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                dupes.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            out[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, out, dupes, inside)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), out, dupes, inside)


def _clean(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    # pydantic marks a failure of a mapping's key (not its value) with a "[key]" step
    return tuple(part for part in loc if part != "[key]")


def _line_for(lines: Mapping[tuple[str | int, ...], int], loc: Sequence[str | int]) -> int | None:
    path = _clean(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), None)


_TYPE_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping (key: value lines)",
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "list_type": "must be a list",
    "string_too_short": "must not be empty",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    ctx = error.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        bound = next(iter(ctx.values()), "")
        if isinstance(bound, float):
            bound = f"{bound:g}"
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }
        return f"must be {words[kind]} {bound}"
    if kind == "enum":
        return "must be one of " + str(ctx.get("expected", "")).replace("'", "")
    message = str(error["msg"])
    return message.replace("Input should be", "must be").replace("Value error, ", "")


def _key(loc: Sequence[str | int]) -> str:
    parts: list[str] = []
    for part in _clean(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part == "":
            parts.append('.""')
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


class Characters:
    """The characters folder: names, and validated loading with every problem reported."""

    def __init__(self, folder: Path, library: TemplateLibrary, *, root: Path | None = None) -> None:
        self.folder = folder
        self.library = library
        #: paths inside character files (workflows, output) are relative to this folder
        self.root = root if root is not None else folder.resolve().parent

    def names(self) -> list[str]:
        """Every loadable character's key: the stems of `*.yaml` files, minus the example."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p.stem
            for p in self.folder.glob("*.y*ml")
            if p.suffix in {".yaml", ".yml"} and p.stem != "example" and NAME_PATTERN.match(p.stem)
        )

    def path_of(self, name: str) -> Path:
        """The file of a character key; refuses anything that is not one of our files."""
        if not NAME_PATTERN.match(name):
            raise CharacterNotFound(name[:64], self.names())
        for suffix in (".yaml", ".yml"):
            path = self.folder / f"{name}{suffix}"
            if path.is_file():
                return path
        raise CharacterNotFound(name, self.names())

    def load(self, name: str) -> Character:
        return self.load_file(self.path_of(name))

    def load_all(self) -> tuple[list[Character], list[Problem]]:
        """Every character file (the example too), with all problems of the broken ones."""
        characters: list[Character] = []
        problems: list[Problem] = []
        for path in sorted(self.folder.glob("*.y*ml")):
            try:
                characters.append(self.load_file(path))
            except CharacterError as exc:
                problems.extend(exc.problems)
        return characters, problems

    def load_file(self, path: Path) -> Character:
        shown = _display(path, self.root)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CharacterError(
                [Problem(shown, None, "", f"cannot read the file ({exc})")]
            ) from None
        return self.parse(text, path=path, shown=shown)

    def parse(self, text: str, *, path: Path, shown: str | None = None) -> Character:
        shown = shown or _display(path, self.root)
        lines: dict[tuple[str | int, ...], int] = {}
        dupes: list[tuple[tuple[str | int, ...], int]] = []
        try:
            node, data = _parse_yaml(text)
            if node is not None:
                _line_map(node, (), lines, dupes)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = getattr(exc, "problem", None) or "not valid YAML"
            raise CharacterError([Problem(shown, line, "", f"invalid YAML: {reason}")]) from None
        except _TooBig as exc:
            raise CharacterError([Problem(shown, exc.line, "", exc.message)]) from None
        except RecursionError:
            # PyYAML composes recursively: thousands of nested brackets exhaust the stack
            raise CharacterError(
                [Problem(shown, None, "", "the YAML is nested too deeply")]
            ) from None
        if node is None or data is None:
            raise CharacterError([Problem(shown, 1, "", "the file is empty")])
        if not isinstance(data, dict):
            raise CharacterError(
                [Problem(shown, node.start_mark.line + 1, "", "must be a mapping of sections")]
            )
        problems = [Problem(shown, line, _key(loc), "duplicate key") for loc, line in dupes]
        try:
            spec = CharacterFile.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
            problems += [
                Problem(shown, _line_for(lines, e["loc"]), _key(e["loc"]), _message(e))
                for e in errors
            ]
            # the names are checked too, on the file without its wrong values, so a wrong
            # threshold does not hide a misspelt strategy in the same block
            problems += [
                Problem(shown, _line_for(lines, loc), _key(loc), message)
                for loc, message in _names_without(data, errors, self.library, self.root)
            ]
            raise CharacterError(problems) from None
        problems += [
            Problem(shown, _line_for(lines, loc), _key(loc), message)
            for loc, message in _check_names(spec, self.library, self.root)
        ]
        if problems:
            raise CharacterError(problems)
        return Character(key=path.stem, path=path, root=self.root, spec=spec)


_DROPPED = object()


def _drop(data: object, loc: tuple[str | int, ...]) -> bool:
    """Remove the value at `loc` (a list item becomes _DROPPED); False when nothing is there."""
    *parents, last = loc
    for part in parents:
        inside_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (isinstance(data, dict) and part in data) and not inside_list:
            return False
        data = data[part]  # type: ignore[index]  # a dict or a list, checked just above
    if isinstance(data, dict) and last in data:
        del data[last]
        return True
    if isinstance(data, list) and isinstance(last, int) and 0 <= last < len(data):
        data[last] = _DROPPED
        return True
    return False


def _without_dropped(data: object) -> object:
    if isinstance(data, dict):
        return {k: _without_dropped(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_without_dropped(v) for v in data if v is not _DROPPED]
    return data


def _names_without(
    data: dict[str, Any],
    errors: Sequence[ErrorDetails],
    library: TemplateLibrary,
    root: Path,
) -> list[tuple[tuple[str | int, ...], str]]:
    """`_check_names` on the file with the values pydantic refused taken out (their defaults
    stand in), leaving out what those values' absence alone would cause; nothing when a
    required value is wrong or missing."""
    pruned: object = copy.deepcopy(data)
    dropped: list[tuple[str | int, ...]] = []
    for _ in range(3):  # a dropped value can uncover a model check of its parent
        for error in errors:
            loc = _clean(error["loc"])
            if not loc or not _drop(pruned, loc):
                return []
            dropped.append(loc)
        try:
            spec = CharacterFile.model_validate(_without_dropped(pruned))
        except ValidationError as exc:
            errors = exc.errors()
            continue
        return [
            (loc, message)
            for loc, message in _check_names(spec, library, root)
            if not any(loc[: len(gone)] == gone or gone[: len(loc)] == loc for gone in dropped)
        ]
    return []


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data of a YAML text."""
    try:
        return yaml.compose(text, Loader=_LOADER), yaml.load(text, Loader=_LOADER)  # noqa: S506
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader:
            raise
    # PyYAML's own parser says what it found where ("but got ':'"), libyaml less: ask it for that
    return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)


def _check_weights(
    loc: tuple[str | int, ...], weights: Mapping[str, float], known: Iterable[str], what: str
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    known = list(known)
    for name, weight in weights.items():
        if name not in known:
            listing = ", ".join(repr(k) if k == "" else k for k in known)
            yield (*loc, name), f"unknown {what} {name!r} (known: {listing})"
        elif not math.isfinite(weight):
            yield (*loc, name), "weight must be a finite number"
        elif weight < 0:
            yield (*loc, name), "weight must not be negative"
    if weights and all(w == 0 for w in weights.values()):
        yield loc, "every weight is 0: give at least one a positive weight"
    if not weights:
        yield loc, "needs at least one choice with a positive weight"


def _workflow_problem(root: Path, file: str) -> str | None:
    """Why a character's workflow path is unusable: it must be a .json file inside the project
    folder (`root`), so a character file cannot point the bot at files elsewhere on the host."""
    path = root / file
    try:
        inside = path.resolve().is_relative_to(root.resolve())
        exists = path.is_file()
    except (OSError, ValueError):  # a name too long, or one with a NUL byte
        return f"workflow file {file[:80]!r} is not a usable file name"
    if Path(file).is_absolute() or not inside:
        return f"workflow file {file[:80]!r} must be inside the project folder (a relative path)"
    if not exists:
        return f"workflow file {file!r} does not exist"
    if path.suffix != ".json":
        return f"workflow file {file!r} must be an API-format .json file"
    return None


def _check_names(
    spec: CharacterFile, library: TemplateLibrary, root: Path
) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """What pydantic cannot know: names that must exist, files that must be there."""
    gen = spec.generation
    yield from _check_weights(
        ("generation", "generation_type_weights"),
        gen.generation_type_weights,
        STRATEGY_NAMES,
        "strategy",
    )
    yield from _check_weights(
        ("generation", "prompt_method_weights"),
        gen.prompt_method_weights,
        PROMPT_METHODS,
        "prompt method",
    )
    yield from _check_weights(
        ("generation", "image_system_prompt_weights"),
        gen.image_system_prompt_weights,
        library.image_templates,
        "image template",
    )
    yield from _check_weights(
        ("generation", "video_system_prompt_weights"),
        gen.video_system_prompt_weights,
        library.video_templates,
        "video template",
    )
    yield from _check_weights(
        ("generation", "style_weights"), gen.style_weights, library.styles, "style"
    )
    for name in gen.workflows:
        if name not in STRATEGY_NAMES:
            yield ("generation", "workflows", name), f"unknown strategy {name!r}"
    for name in spec.additional_params.strategies:
        if name not in STRATEGY_NAMES:
            yield ("additional_params", "strategies", name), f"unknown strategy {name!r}"
    if gen.variations.mode == "img2img" and strategies.IMAGE_FROM_IMAGE not in gen.workflows:
        yield (
            ("generation", "variations", "mode"),
            f"img2img variations need generation.workflows.{strategies.IMAGE_FROM_IMAGE} "
            "(the workflow they use)",
        )
    if gen.prompt_method_weights.get("two_character", 0) > 0 and not spec.character.group_name:
        yield (
            ("generation", "prompt_method_weights", "two_character"),
            "two_character needs character.group_name (the second character comes from the group)",
        )

    # Every workflow file named anywhere must exist; every strategy in use must have one.
    def workflow_refs() -> Iterable[tuple[tuple[str | int, ...], str]]:
        for strategy, file in gen.workflows.items():
            yield ("generation", "workflows", strategy), file
        params = spec.additional_params
        for scope, sp in [("general", params.general), *params.strategies.items()]:
            base: tuple[str | int, ...] = (
                ("additional_params", "general")
                if scope == "general"
                else ("additional_params", "strategies", scope)
            )
            if sp.workflow:
                yield (*base, "workflow"), sp.workflow
            for stage in ("first_stage", "second_stage"):
                stage_params = getattr(sp, stage)
                if stage_params is not None and stage_params.workflow:
                    yield (*base, stage, "workflow"), stage_params.workflow
        if gen.upscale is not None:
            yield ("generation", "upscale", "workflow"), gen.upscale.workflow
        # a sticker pack that removes backgrounds on ComfyUI needs that workflow too
        packs = [
            name
            for name, weight in gen.generation_type_weights.items()
            if weight > 0 and name in STRATEGY_NAMES and strategies.needs(name).stickers
        ]
        if packs and spec.stickers.background == "comfyui":
            yield ("stickers", "remove_background"), spec.stickers.remove_background

    narrates = any(
        weight > 0 and name in STRATEGY_NAMES and strategies.needs(name).narrated
        for name, weight in gen.generation_type_weights.items()
    )
    if narrates and spec.longvideo.speech == "comfyui":
        refs = [
            *workflow_refs(),
            (("longvideo", "speech_workflow"), spec.longvideo.speech_workflow),
        ]
    else:
        refs = list(workflow_refs())
    for loc, file in refs:
        problem = _workflow_problem(root, file)
        if problem:
            yield loc, problem

    character = Character(key="", path=root, root=root, spec=spec)
    for strategy, weight in gen.generation_type_weights.items():
        if weight <= 0 or strategy not in STRATEGY_NAMES:
            continue
        needs = strategies.needs(strategy)
        for stage in needs.stages:
            try:
                character.workflow_path(strategy, stage.name)
            except KeyError:
                yield (
                    ("generation", "workflows"),
                    f"{strategy} has weight {weight:g} but no workflow{_where(stage.name)}: add "
                    f"generation.workflows.{strategy}",
                )
        if needs.video and not gen.video_system_prompt_weights:
            yield (
                ("generation", "video_system_prompt_weights"),
                f"{strategy} needs a video template",
            )


def _where(stage: str) -> str:
    """` (first stage)` for a stage of a two-stage strategy, nothing for `main`."""
    return f" ({stage.replace('_', ' ')})" if stage != MAIN else ""


# ---------------------------------------------------------------------------- new characters


def new_character_text(example: str, key: str) -> str:
    """A character file for `key` from the commented example: its name, output folder, input
    folder, hashtag and credentials names made its own; every comment kept."""
    header = (
        f"# The character {key!r}, written by `python -m pipeline new-character {key}` from\n"
        "# characters/example.yaml. Edit it, then run `python -m pipeline check`.\n"
    )
    body = re.sub(r"\A(?:#[^\n]*\n)+", header, example, count=1)
    body = re.sub(r"(?m)^(  name: )Example Fox\b", lambda m: m.group(1) + key, body, count=1)
    tag = re.sub(r"[^A-Za-z0-9_]", "", key).lower() or "character"
    for old, new in (
        ("output/example", f"output/{key}"),
        ("characters/inputs/example", f"characters/inputs/{key}"),
        ('"#examplefox"', f'"#{tag}"'),
        ("credentials: example_", f"credentials: {key}_"),
    ):
        body = body.replace(old, new)
    return body
