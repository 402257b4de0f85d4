"""Learning from what worked: a character with `learn: true` picks its generation type, prompt
method, template and style by weights that follow what reviewers approve and audiences engage
with. Pure functions over store rows; imports domain modules only.

The bandit: each choice has a Beta(1, 1) prior over "this choice does well". A run is evidence
for the choices it made: one trial per review (approved is a success), and one per published
run whose posts were read (engagement above the character's average is a success). The learned
share of a choice is its YAML share times its posterior mean, normalised, and never below
`FLOOR` times its YAML share, so nothing the YAML allows is starved. The weights are computed
from history on each run (never written into the YAML): removing `learn: true` is a reset. The
picks still draw from the run's seeded Random; the weights used are recorded on the run
(`Choices.weights`), so a run's picks can be replayed.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.characters import Character
from pipeline.models import Platform, Run, RunState
from pipeline.ports import PostMetrics
from pipeline.readings import CHECKPOINT_ORDER, MetricRow

#: a choice the YAML allows keeps at least this part of its YAML share
FLOOR = 0.05
#: how many of a character's latest runs are the evidence (bounded work per run)
HISTORY_RUNS = 500
#: (what people call it, the field of `Choices`, the weights keys of `generation` it learns)
DIMENSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("generation type", "generation_type", ("generation_type_weights",)),
    ("prompt method", "prompt_method", ("prompt_method_weights",)),
    ("template", "template", ("image_system_prompt_weights", "video_system_prompt_weights")),
    ("style", "style", ("style_weights",)),
)
#: the states of runs whose review has not happened yet: no evidence
_OPEN = frozenset(
    {
        RunState.CREATED,
        RunState.PROMPTED,
        RunState.DESCRIBED,
        RunState.GENERATED,
        RunState.SCORED,
        RunState.CAPTIONED,
        RunState.AWAITING_REVIEW,
    }
)


class HistoryStore(Protocol):
    """Where a character's history is read (`pipeline.store.SqlStore`)."""

    async def recent_run_data(self, character: str, limit: int) -> list[str]: ...
    async def metrics_of(self, character: str) -> list[MetricRow]: ...


@dataclass(frozen=True)
class Outcome:
    """What one run chose and how it did: reviewed and approved, and its engagement (likes,
    reposts and replies at its latest reading, over its platforms) once read."""

    run_id: str
    choices: Mapping[str, str]
    reviewed: bool
    approved: bool
    engagement: int | None = None
    views: int | None = None


def engagement_of(metrics: PostMetrics) -> int:
    return (metrics.likes or 0) + (metrics.reposts or 0) + (metrics.replies or 0)


def outcomes(runs: Iterable[Run], metrics: Iterable[MetricRow]) -> list[Outcome]:
    """One Outcome per run that made its choices; linear in runs and readings."""
    latest: dict[tuple[str, Platform], MetricRow] = {}
    for row in metrics:
        key = (row.run_id, row.platform)
        held = latest.get(key)
        if held is None or CHECKPOINT_ORDER.get(row.checkpoint, -1) > CHECKPOINT_ORDER.get(
            held.checkpoint, -1
        ):
            latest[key] = row
    engaged: dict[str, int] = {}
    viewed: dict[str, int] = {}
    for (run_id, _), row in latest.items():
        engaged[run_id] = engaged.get(run_id, 0) + engagement_of(row.metrics)
        if row.metrics.views is not None:
            viewed[run_id] = viewed.get(run_id, 0) + row.metrics.views
    found = []
    for run in runs:
        if run.choices is None or run.state in _OPEN:
            continue
        chosen = {field: str(getattr(run.choices, field)) for _, field, _ in DIMENSIONS}
        decision = run.decision
        found.append(
            Outcome(
                run_id=run.id,
                choices=chosen,
                reviewed=decision is not None,
                approved=decision is not None and decision.approved,
                engagement=engaged.get(run.id),
                views=viewed.get(run.id),
            )
        )
    return found


@dataclass(frozen=True)
class Evidence:
    """What the history says of one choice."""

    reviewed: int = 0
    approved: int = 0
    measured: int = 0
    engaged: int = 0

    @property
    def trials(self) -> int:
        return self.reviewed + self.measured

    @property
    def successes(self) -> int:
        return self.approved + self.engaged

    @property
    def mean(self) -> float:
        """The posterior mean of Beta(1 + successes, 1 + failures)."""
        return (1 + self.successes) / (2 + self.trials)


def evidence(found: Sequence[Outcome], field: str) -> dict[str, Evidence]:
    """Each choice's evidence in `field` (a `Choices` field)."""
    measured = [o.engagement for o in found if o.engagement is not None]
    average = statistics.fmean(measured) if measured else 0.0
    tally: dict[str, list[int]] = {}
    for outcome in found:
        counts = tally.setdefault(outcome.choices[field], [0, 0, 0, 0])
        if outcome.reviewed:
            counts[0] += 1
            counts[1] += outcome.approved
        if outcome.engagement is not None:
            counts[2] += 1
            counts[3] += outcome.engagement > average
    return {choice: Evidence(*counts) for choice, counts in tally.items()}


def learned_shares(
    weights: Mapping[str, float], found: Mapping[str, Evidence], *, floor: float = FLOOR
) -> dict[str, float]:
    """Shares (summing to 1) of the choices with a YAML weight > 0: YAML share times posterior
    mean, normalised, each at least `floor` times its YAML share. No evidence: the YAML shares."""
    allowed = {name: w for name, w in weights.items() if w > 0}
    total = sum(allowed.values())
    prior = {name: w / total for name, w in allowed.items()}
    raw = {name: prior[name] * found.get(name, Evidence()).mean for name in allowed}
    # water-filling: floored choices keep their floor, the rest share what is left in
    # proportion; at most one round per choice
    floored: set[str] = set()
    while True:
        left = 1.0 - sum(floor * prior[name] for name in floored)
        free = {name: raw[name] for name in allowed if name not in floored}
        scale = left / sum(free.values()) if free else 0.0
        shares = {name: floor * prior[name] for name in floored}
        shares.update({name: value * scale for name, value in free.items()})
        low = {name for name in free if shares[name] < floor * prior[name]}
        if not low:
            return shares
        floored |= low


@dataclass(frozen=True)
class WeightChange:
    """How learning moved one choice, and why."""

    dimension: str
    choice: str
    prior: float
    learned: float
    evidence: Evidence

    def sentence(self) -> str:
        seen = self.evidence
        return (
            f"{self.dimension} {self.choice or '(none)'}: {self.prior:.2f} -> {self.learned:.2f}"
            f" because {seen.approved} of {seen.reviewed} reviewed were approved and "
            f"{seen.engaged} of {seen.measured} read did better than the average"
        )


@dataclass(frozen=True)
class Learned:
    """A learning character's effective weights (per `generation` weights key) and why."""

    weights: dict[str, dict[str, float]]
    changes: tuple[WeightChange, ...]


def learn(
    generation_weights: Mapping[str, Mapping[str, float]], found: Sequence[Outcome]
) -> Learned:
    """The effective weights of every learned weights key in `generation_weights` (its keys are
    the `generation` section's weights keys, values their YAML weights)."""
    weights: dict[str, dict[str, float]] = {}
    changes: list[WeightChange] = []
    for dimension, field, keys in DIMENSIONS:
        seen = evidence(found, field)
        for key in keys:
            yaml_weights = generation_weights.get(key) or {}
            if not any(w > 0 for w in yaml_weights.values()):
                continue
            shares = learned_shares(yaml_weights, seen)
            weights[key] = shares
            total = sum(w for w in yaml_weights.values() if w > 0)
            for name, share in sorted(shares.items()):
                changes.append(
                    WeightChange(
                        dimension,
                        name,
                        yaml_weights[name] / total,
                        share,
                        seen.get(name, Evidence()),
                    )
                )
    return Learned(weights, tuple(changes))


async def history(store: HistoryStore, character: str) -> list[Outcome]:
    """The outcomes of `character`'s latest runs (at most HISTORY_RUNS)."""
    texts = await store.recent_run_data(character, HISTORY_RUNS)
    # hundreds of runs take tens of milliseconds to read: off the event loop
    runs = await asyncio.to_thread(lambda: [Run.from_json(text) for text in texts])
    return outcomes(runs, await store.metrics_of(character))


async def learned_weights(
    store: HistoryStore | None, character: Character
) -> dict[str, dict[str, float]]:
    """The weights a run of `character` picks by, per `generation` weights key, when it learns
    and `store` holds its history; empty (the YAML's weights) otherwise."""
    if store is None or not character.generation.learn:
        return {}
    gen = character.generation
    yaml_weights = {key: getattr(gen, key) for _, _, keys in DIMENSIONS for key in keys}
    return learn(yaml_weights, await history(store, character.key)).weights
