"""The benchmarks run to the end with tiny parameters and finish on their key=value line.

Only that the figures are there and are numbers: timing goals depend on the machine, so they
are the benchmarks' output to read, never something a test asserts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from benchmarks import (
    comfy_pipelining,
    first_call,
    model_output,
    pipeline_overhead,
    startup,
    vision_scoring,
)

Main = Callable[[Sequence[str] | None], object]

CASES: list[tuple[str, Main, list[str], list[str]]] = [
    (
        "pipeline_overhead",
        pipeline_overhead.main,
        [
            "--runs",
            "2",
            "--descriptions",
            "1",
            "--images",
            "1",
            "--job-seconds",
            "0.02",
            "--llm-seconds",
            "0.01",
            "--vision-seconds",
            "0.01",
            "--file-kb",
            "0",
            "--idle-seconds",
            "0.05",
        ],
        [
            "overhead_ratio",
            "loop_lag_p99_ms",
            "peak_rss_mb",
            "speedup_vs_sequential",
            "reference_s",
            "speedup_vs_reference",
        ],
    ),
    (
        "comfy_pipelining",
        comfy_pipelining.main,
        [
            *["--jobs", "2", "--seconds", "0.02", "--latency", "0"],
            *["--object-info-mb", "0.1", "--output-kb", "0", "--repeats", "1"],
        ],
        [
            *["speedup_n2_cold", "first_start_ms_cold", "ref_first_start_ms_cold"],
            *["speedup_n2_warm", "first_start_ms_warm", "ref_first_start_ms_warm"],
            "idle_gap_ms_median",
        ],
    ),
    (
        "first_call",
        first_call.main,
        ["--repeats", "1", "--providers", "gemini"],
        [f"{mode}_stall_ms_gemini" for mode in first_call.MODES],
    ),
    (
        "vision_scoring",
        vision_scoring.main,
        ["--images", "2", "--latency", "0.01", "--limit", "2"],
        ["prep_cpu_ms_per_image", "pillow_png_decode_cpu_ms", "peak_mb", "ratio_to_ideal"],
    ),
    (
        "startup",
        startup.main,
        ["--runs", "1"],
        ["pipeline_help_ratio", "comfy_help_ratio"],
    ),
    (
        "model_output",
        model_output.main,
        ["--size-kb", "32", "--repeats", "1"],
        [
            "loop_lag_p99_ms",
            "loop_lag_max_ms",
            "loop_busy_max_ms",
            "idle_lag_p99_ms",
            "worst_step_s",
        ],
    ),
]


def last_line_figures(output: str) -> dict[str, float]:
    """The key=value pairs of the output's last line, as numbers."""
    last = output.strip().splitlines()[-1]
    pairs = [part.split("=", 1) for part in last.split()]
    assert all(len(pair) == 2 for pair in pairs), last
    return {key: float(value) for key, value in pairs}


@pytest.mark.parametrize(("name", "main", "argv", "keys"), CASES, ids=[c[0] for c in CASES])
def test_a_benchmark_ends_with_its_figures(
    name: str, main: Main, argv: list[str], keys: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone running a benchmark gets its figures as numbers on the last line."""
    main(argv)
    figures = last_line_figures(capsys.readouterr().out)
    assert list(figures) == keys
    assert all(math.isfinite(value) and value >= 0 for value in figures.values()), figures
