"""The soak (benchmarks/soak.py) in a short form: a few seconds of scheduled and requested runs
with random faults and restarts, audited afterwards. Correctness only, never timing: a failure
names the seed and the runs, so `python benchmarks/soak.py --seed N` replays it."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path

import pytest

from benchmarks.soak import TRACE_FRAMES, Figures, SoakConfig, _our_frame, soak

SHORT = SoakConfig(seconds=4.0, seed=7, restart_every=0.7, fault_every=0.12, drain_seconds=20)

#: descriptors that may come and go between the two counts (a resolver, a log file)
FD_SLACK = 3


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Figures:
    folder: Path = tmp_path_factory.mktemp("soak")
    return asyncio.run(soak(SHORT, folder))


def test_the_soak_met_restarts_and_faults(figures: Figures) -> None:
    """The short soak really ran runs through restarts and faults (else it proves nothing)."""
    assert figures.runs_started >= 5, figures.report()
    assert figures.restarts >= 2, figures.report()
    assert figures.resumed >= 1, figures.report()
    assert sum(figures.faults.values()) >= 10, figures.report()


def test_no_run_is_lost(figures: Figures) -> None:
    """Every run the soak started ends finished in the store, whatever hit it."""
    assert figures.lost == 0, f"seed {SHORT.seed}: lost {figures.lost_runs}\n{figures.report()}"


def test_no_run_is_posted_twice(figures: Figures) -> None:
    """No platform holds a run's post twice, and no run has two records for one platform."""
    assert figures.duplicate_posts == 0, figures.report()
    assert figures.published_without_post == 0, figures.report()


def test_a_schedule_slot_starts_one_run(figures: Figures) -> None:
    """Two schedulers ticking the same hour, and restarts, start one run per slot."""
    assert figures.duplicate_slots == 0, figures.report()
    assert figures.scheduled_without_slot == 0, figures.report()


def test_no_schedule_slot_is_claimed_without_its_run(figures: Figures) -> None:
    """A restart right after a slot's claim still leaves its run, so no hour's post is skipped."""
    assert figures.slots_without_run == 0, f"seed {SHORT.seed}:\n{figures.report()}"


def test_open_files_do_not_grow(figures: Figures) -> None:
    """After many runs and restarts the process holds no more descriptors than at the start."""
    assert figures.fds_end <= figures.fds_start + FD_SLACK, figures.report()


def test_no_run_stops_on_an_unexpected_error(figures: Figures) -> None:
    """Faults end runs as failed with a reason, never as an unexpected error in the log."""
    assert not figures.errors_logged, f"seed {SHORT.seed}:\n{figures.report()}"


def test_the_last_line_tells_memory_growth_and_descriptors(figures: Figures) -> None:
    """Someone reading the soak's last line sees the memory growth over the second half and
    the open descriptors at start and end, as numbers (their goals are the soak's to judge)."""
    pairs = dict(part.split("=", 1) for part in figures.line().split())
    for key in ("rss_growth_mb_second_half", "fds_start", "fds_end"):
        float(pairs[key])
    assert figures.rss_mid_mb > 0, figures.report()


def _parsed_answers() -> list[object]:
    return [json.loads('{"a": [1, 2, 3]}') for _ in range(2000)]


def test_growth_is_told_by_the_line_of_ours_that_allocated() -> None:
    """Tracing growth names the project's line that kept the memory, not the library's line
    that allocated it (json's decoder allocates every parsed answer)."""
    tracemalloc.start(TRACE_FRAMES)
    try:
        kept = _parsed_answers()
        stats = tracemalloc.take_snapshot().statistics("traceback")
    finally:
        tracemalloc.stop()
    assert len(kept) == 2000
    parsed = next(s for s in stats if s.traceback[-1].filename.endswith("json/decoder.py"))
    line = _parsed_answers.__code__.co_firstlineno + 1
    assert _our_frame(parsed.traceback) == f"tests/test_soak.py:{line}"
