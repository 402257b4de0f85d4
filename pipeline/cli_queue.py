"""The publish queue from a terminal: `queue`, `publish-due` (for cron), `publish-now RUN_ID`,
`unqueue RUN_ID`. A thin adapter over `pipeline.publish.queue`, as the bot's cog is; exit codes
are `pipeline.failures`'. Imported by `pipeline.__main__` only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipeline.failures import EXIT_OK, EXIT_SERVICE
from pipeline.models import PostRecord, PostState

if TYPE_CHECKING:
    from pipeline.publish.queue import PublishQueue
    from pipeline.queued import QueuedPost

COMMANDS = frozenset({"queue", "publish-due", "publish-now", "unqueue"})

#: who `unqueue` names on the run (the bot names the member)
TERMINAL = "the command line"


def add_queue_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("queue", help="what the publish queue posts when, per account")
    sub.add_parser("publish-due", help="post the queued posts whose slot has come (for cron)")
    now = sub.add_parser("publish-now", help="post a queued run at once, slots or not")
    now.add_argument("run_id")
    off = sub.add_parser("unqueue", help="take a queued run's waiting posts off the queue")
    off.add_argument("run_id")


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def queue_lines(entries: Sequence[QueuedPost]) -> list[str]:
    """One line per waiting post, grouped by account, soonest first within each."""
    lines: list[str] = []
    accounts = sorted({(e.platform.value, e.account) for e in entries})
    for platform, account in accounts:
        lines.append(f"{platform} {account}:")
        for entry in entries:
            if (entry.platform.value, entry.account) == (platform, account):
                lines.append(f"  {when(entry.due_at)}  run {entry.run_id}  {entry.character}")
    return lines


def _record_line(record: PostRecord) -> str:
    shown = (record.url or record.remote_id) if record.state is PostState.POSTED else None
    return f"{record.run_id} {record.platform.value}: {record.state.value} " + (
        shown or record.error or ""
    )


async def cmd_queue(queue: PublishQueue, args: argparse.Namespace) -> int:
    """One of the queue's commands on `queue` (over the store the entry point opened)."""
    if args.command == "queue":
        entries = await queue.pending()
        for line in queue_lines(entries):
            print(line)
        print(f"{len(entries)} post(s) queued")
        return EXIT_OK
    if args.command == "publish-due":
        records = await queue.publish_due()
        for record in records:
            print(_record_line(record).rstrip())
        print(f"{len(records)} due post(s) handled")
        return EXIT_OK if all(r.state is PostState.POSTED for r in records) else EXIT_SERVICE
    if args.command == "publish-now":
        outcome = await queue.publish_now(args.run_id)
        for record in outcome.posts:
            print(_record_line(record).rstrip())
        for platform in outcome.busy:
            print(f"{platform.value}: another process is posting it now", file=sys.stderr)
        print(f"run {outcome.run.id}: {outcome.run.state.value}")
        return EXIT_OK if all(r.state is PostState.POSTED for r in outcome.posts) else EXIT_SERVICE
    outcome = await queue.unqueue(args.run_id, TERMINAL)
    for platform in outcome.busy:
        print(f"{platform.value}: already being posted; it goes out", file=sys.stderr)
    print(
        f"run {outcome.run.id} is off the publish queue; its waiting posts do not go out."
        f" `python -m pipeline resume {outcome.run.id}` queues it again,"
        f" `python -m pipeline publish-now {outcome.run.id}` posts it now"
    )
    return EXIT_OK


__all__ = ["COMMANDS", "add_queue_commands", "cmd_queue", "queue_lines", "when"]
