"""What worked, per character: approval rate and engagement by generation type, prompt method,
template and style, and how learning moved the weights. `compute_stats` is pure over store rows;
`character_stats` reads them; `stats_table` is the text both adapters show (`/stats`,
`python -m pipeline stats`); the chart is `pipeline.stats_chart`. Imports domain modules only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.characters import Character
from pipeline.learning import DIMENSIONS, HistoryStore, Outcome, WeightChange, history, learn

#: rows of the table per dimension (the most-used choices); the chart shows the same
MAX_CHOICES = 8


@dataclass(frozen=True)
class ChoiceStats:
    """How runs that made one choice did."""

    dimension: str
    choice: str
    runs: int
    reviewed: int
    approved: int
    measured: int
    #: mean likes + reposts + replies of its read runs (latest reading), or None
    engagement: float | None

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.reviewed if self.reviewed else None


@dataclass(frozen=True)
class Stats:
    character: str
    runs: int
    reviewed: int
    approved: int
    rows: tuple[ChoiceStats, ...]
    #: how learning moved each weight (empty when the character does not learn)
    changes: tuple[WeightChange, ...] = ()

    @property
    def empty(self) -> bool:
        return self.runs == 0


def compute_stats(
    character: str,
    found: Sequence[Outcome],
    *,
    learned_from: Mapping[str, Mapping[str, float]] | None = None,
) -> Stats:
    """The stats of `found` (a character's outcomes); with `learned_from` (its YAML weights
    per `generation` key, when it learns) also how learning moved them. Linear in outcomes."""
    rows: list[ChoiceStats] = []
    for dimension, field, _ in DIMENSIONS:
        groups: dict[str, list[Outcome]] = {}
        for outcome in found:
            groups.setdefault(outcome.choices[field], []).append(outcome)
        ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        for choice, members in ranked[:MAX_CHOICES]:
            read = [o.engagement for o in members if o.engagement is not None]
            rows.append(
                ChoiceStats(
                    dimension=dimension,
                    choice=choice,
                    runs=len(members),
                    reviewed=sum(o.reviewed for o in members),
                    approved=sum(o.approved for o in members),
                    measured=len(read),
                    engagement=sum(read) / len(read) if read else None,
                )
            )
    changes = learn(learned_from, found).changes if learned_from is not None else ()
    return Stats(
        character=character,
        runs=len(found),
        reviewed=sum(o.reviewed for o in found),
        approved=sum(o.approved for o in found),
        rows=tuple(rows),
        changes=changes,
    )


async def character_stats(store: HistoryStore, character: Character) -> Stats:
    """`character`'s stats from the store (its latest runs and their readings)."""
    found = await history(store, character.key)
    learned_from = None
    if character.generation.learn:
        gen = character.generation
        learned_from = {key: getattr(gen, key) for _, _, keys in DIMENSIONS for key in keys}
    return compute_stats(character.key, found, learned_from=learned_from)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def stats_table(stats: Stats, *, width: int = 36) -> str:
    """The short table both adapters show; one sentence when there is nothing yet."""
    if stats.empty:
        return (
            f"{stats.character} has no finished runs yet, so there is nothing to show; "
            "stats appear once runs are reviewed."
        )
    lines = [
        f"{stats.character}: {stats.runs} runs, {stats.approved} of {stats.reviewed} reviewed "
        f"approved ({_percent(stats.approved / stats.reviewed if stats.reviewed else None)})",
    ]
    current = ""
    for row in stats.rows:
        if row.dimension != current:
            current = row.dimension
            lines.append(f"{current:<{width}} {'runs':>5} {'approved':>9} {'engagement':>11}")
        engagement = "-" if row.engagement is None else f"{row.engagement:.1f}"
        name = (row.choice or "(none)")[: width - 2]
        lines.append(
            f"  {name:<{width - 2}} {row.runs:>5} {_percent(row.approval_rate):>9} {engagement:>11}"
        )
    moved = [change for change in stats.changes if abs(change.learned - change.prior) >= 0.005]
    if stats.changes:
        lines.append("learning (YAML share -> learned share):")
        lines.extend(f"  {change.sentence()}" for change in moved)
        if not moved:
            lines.append("  no weight has moved yet: too little history")
    return "\n".join(lines)
