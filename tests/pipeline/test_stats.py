"""The stats table: approval and engagement per choice, the latest reading counts, learning said."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.learning import outcomes
from pipeline.models import Choices, Decision, Job, Platform, Run, RunState
from pipeline.ports import PostMetrics
from pipeline.readings import MetricRow
from pipeline.stats import compute_stats, stats_table

AT = datetime(2026, 3, 1, tzinfo=UTC)


def _run(run_id: str, style: str, approved: bool | None) -> Run:
    choices = Choices(seed=1, character="fox", generation_type="text2img",
                      prompt_method="arbitrary", template="stable_diffusion_prompt", style=style)  # fmt: skip
    decision = None if approved is None else Decision(approved, (0,), "r", AT)
    state = RunState.EXPIRED if approved is None else RunState.PUBLISHED
    return Run.new(Job("fox"), run_id=run_id).advance(state, choices=choices, decision=decision)


def test_engagement_is_the_latest_reading_summed_over_platforms() -> None:
    """A post read at 1 h and 7 d counts its 7-day numbers; X and Bluesky add up."""
    runs = [_run("a", "pixel_art", True), _run("b", "pixel_art", False), _run("c", "anime", None)]
    metrics = [
        MetricRow("a", Platform.TWITTER, "1h", PostMetrics(likes=1)),
        MetricRow("a", Platform.TWITTER, "7d", PostMetrics(likes=10, reposts=2)),
        MetricRow("a", Platform.BLUESKY, "24h", PostMetrics(likes=3, replies=1)),
    ]

    stats = compute_stats("fox", outcomes(runs, metrics))

    [pixel] = [row for row in stats.rows if row.choice == "pixel_art"]
    assert (pixel.runs, pixel.reviewed, pixel.approved, pixel.engagement) == (2, 2, 1, 16.0)
    [anime] = [row for row in stats.rows if row.choice == "anime"]
    assert (anime.reviewed, anime.approval_rate) == (0, None)  # expired: not reviewed
    assert stats_table(stats).splitlines()[0] == "fox: 3 runs, 1 of 2 reviewed approved (50%)"


def test_learning_is_explained_in_the_table() -> None:
    """With learning on, each moved weight is said with its reason."""
    runs = [_run(f"p{n}", "pixel_art", True) for n in range(6)]
    runs += [_run(f"w{n}", "watercolor", False) for n in range(6)]
    weights = {"style_weights": {"pixel_art": 1.0, "watercolor": 1.0}}

    table = stats_table(compute_stats("fox", outcomes(runs, []), learned_from=weights))

    assert "learning (YAML share -> learned share):" in table
    assert (
        "  style pixel_art: 0.50 -> 0.88 because 6 of 6 reviewed were approved and 0 of 0 read "
        "did better than the average"
    ) in table.splitlines()
