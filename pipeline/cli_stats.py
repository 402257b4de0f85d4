"""`python -m pipeline collect-metrics` (one pass, for cron) and `python -m pipeline stats
CHARACTER [--chart FILE]`: thin adapters over `pipeline.metrics` and `pipeline.stats`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.failures import EXIT_BAD_INPUT, EXIT_OK
from pipeline.store import open_store

if TYPE_CHECKING:  # pydantic: loaded by the entry point after the arguments are read
    from pipeline.settings import Settings


def add_stats_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser(
        "collect-metrics",
        help="read the due metrics of published posts once (1 h, 24 h, 7 days after posting)",
    )
    stats = sub.add_parser("stats", help="approval rate and engagement by choice, and learning")
    stats.add_argument("character", help="the character's key (its file name without .yaml)")
    stats.add_argument("--chart", type=Path, metavar="FILE", help="also draw the chart (PNG)")


async def cmd_collect_metrics(settings: Settings, args: argparse.Namespace) -> int:
    """One collection pass: prints what it read, retried and missed."""
    from pipeline.console import LogNotifier
    from pipeline.wiring import metrics_collector  # it imports every platform's client

    url = settings.database_url.get_secret_value()
    async with open_store(url, sqlite_path=settings.database_path) as store:
        collector = metrics_collector(settings, store, notifier=LogNotifier(sys.stderr))
        try:
            report = await collector.collect_once()
        finally:
            await collector.aclose()
    for note in report.notes:
        print(f"missed: {note}", file=sys.stderr)
    print(report.sentence())
    return EXIT_OK


async def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    """Print the stats table of a character (and write the chart with --chart)."""
    from pipeline.stats import character_stats, stats_table
    from pipeline.wiring import characters_from

    chart: Path | None = args.chart
    if chart is not None and chart.suffix.lower() != ".png":
        print(f"--chart {chart}: the chart is a PNG; name a file ending in .png", file=sys.stderr)
        return EXIT_BAD_INPUT
    character = await asyncio.to_thread(characters_from(settings).load, args.character)
    url = settings.database_url.get_secret_value()
    async with open_store(url, sqlite_path=settings.database_path) as store:
        stats = await character_stats(store, character)
    print(stats_table(stats))
    if chart is not None and not stats.empty:
        from pipeline.stats_chart import draw_chart

        await draw_chart(stats, chart)
        print(f"chart: {chart}")
    return EXIT_OK
