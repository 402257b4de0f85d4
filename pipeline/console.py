"""The terminal's Reviewer, Notifier and ProgressSink, for `python -m pipeline run`.

`AutoReviewer` approves every kept file (cron, testing a character); `ConsoleReviewer` asks on
the terminal, reading input in a thread. Never imports bot or discord.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pipeline.errors import ReviewUnavailable
from pipeline.models import (
    ActionKind,
    Decision,
    Platform,
    PostRecord,
    ReviewAction,
    ReviewTicket,
    Run,
    RunState,
    StagePick,
    utcnow,
)
from pipeline.ports import Progress
from pipeline.previews import contact_sheet

BAR_WIDTH = 20


class AutoReviewer:
    """Approves every kept file at once, as `--review auto` asks."""

    async def request(self, run: Run, folder: Path) -> ReviewTicket:
        return ReviewTicket(channel_id=0, message_ids=(), posted_at=utcnow())

    async def wait(self, run: Run, ticket: ReviewTicket) -> Decision:
        return Decision(approved=True, selected=run.shown(), by="auto", at=utcnow())

    async def request_pick(self, run: Run, folder: Path, pick: StagePick) -> ReviewTicket:
        return ReviewTicket(channel_id=0, message_ids=(), posted_at=utcnow())

    async def wait_pick(self, run: Run, ticket: ReviewTicket, pick: StagePick) -> Decision:
        """The best `keep` by score, as without a person."""
        chosen = tuple(range(min(pick.keep, len(pick.drafts))))
        return Decision(approved=True, selected=chosen, by="auto", at=utcnow())


class ConsoleReviewer:
    """Shows the kept files, captions and a narrated run's script, then asks: y (all), n, or
    the numbers to keep."""

    def __init__(self, out: TextIO = sys.stdout, stdin: TextIO | None = None) -> None:
        self.out = out
        #: where answers are read (standard input by default; None when it is closed)
        self.stdin = stdin if stdin is not None else sys.stdin

    async def request(self, run: Run, folder: Path) -> ReviewTicket:
        attempt = f", attempt {run.attempt}" if run.attempt > 1 else ""
        lines = [f"\nReview of run {run.id} ({run.character}{attempt}): {run.prompt}"]
        if run.sound_prompt:
            lines.append(f"  sound: {run.sound_prompt}")
        for number, index in enumerate(run.shown(), start=1):
            item = run.media[index]
            score = f"{item.score:.2f}" if item.score is not None else "  - "
            name = _sticker_name(run, item.description_index)
            lines.append(f"  {number:>2}. {score}  {folder / item.path}  {name}{item.reason or ''}")
        sheet = await contact_sheet(folder, run)
        if sheet is not None:
            lines.append(f"  contact sheet: {sheet}")
        for platform, caption in run.captions.items():
            lines.append(f"  [{platform}] {caption}")
        if run.script is not None:  # a narrated run: the reel's script, scene by scene
            lines.append("  Script:")
            lines.extend(f"    {line}" for line in run.script.text().splitlines())
        print("\n".join(lines), file=self.out, flush=True)
        return ReviewTicket(channel_id=0, message_ids=(), posted_at=utcnow())

    async def wait(self, run: Run, ticket: ReviewTicket) -> Decision | ReviewAction:
        """The answer typed; ReviewUnavailable when standard input has ended or is closed (cron,
        a pipe, Ctrl-D), so the run is left awaiting review instead of failing."""
        try:
            while (
                parsed := parse_answer(await asyncio.to_thread(self._ask, question(run)), run)
            ) is None:
                print("This review cannot do that; try again.", file=self.out, flush=True)
        except EOFError:
            print(file=self.out, flush=True)
            raise ReviewUnavailable("standard input ended before the review was answered") from None
        return parsed

    async def request_pick(self, run: Run, folder: Path, pick: StagePick) -> ReviewTicket:
        lines = [f"\nDrafts of run {run.id} ({run.character}) after {pick.stage}, best first:"]
        for number, item in enumerate(pick.drafts, start=1):
            score = f"{item.score:.2f}" if item.score is not None else "  - "
            lines.append(f"  {number:>2}. {score}  {folder / item.path}  {item.reason or ''}")
        print("\n".join(lines), file=self.out, flush=True)
        return ReviewTicket(channel_id=0, message_ids=(), posted_at=utcnow())

    async def wait_pick(self, run: Run, ticket: ReviewTicket, pick: StagePick) -> Decision:
        """The numbers typed (Enter: the best `keep`); ReviewUnavailable when standard input
        has ended, so the run is left waiting for the pick (`resume` asks again)."""
        try:
            answer = await asyncio.to_thread(
                self._ask, f"Refine which drafts? [numbers like 1 3 / Enter = best {pick.keep}]: "
            )
        except EOFError:
            print(file=self.out, flush=True)
            raise ReviewUnavailable("standard input ended before the drafts were picked") from None
        numbers = [int(w) - 1 for w in answer.replace(",", " ").split() if w.isdigit()]
        chosen = tuple(n for n in dict.fromkeys(numbers) if 0 <= n < len(pick.drafts))
        if not chosen:
            chosen = tuple(range(min(pick.keep, len(pick.drafts))))
        return Decision(approved=True, selected=chosen, by="console", at=utcnow())

    def _ask(self, prompt: str) -> str:
        if self.stdin is None or self.stdin.closed:
            raise EOFError
        print(prompt, end="", file=self.out, flush=True)
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line


#: what each action is typed as, and its help in the question
TYPED = {
    ActionKind.REROLL: "r = reroll",
    ActionKind.MORE_LIKE: "m N = more like N",
    ActionKind.UPSCALE: "u [numbers] = approve and upscale",
}


def question(run: Run) -> str:
    """The question the console asks, with the actions the review offers."""
    actions = " / ".join(TYPED[k] for k in run.offers)
    return (
        "Approve? [y = all / n / numbers like 1 3]" + (f" or [{actions}]" if actions else "") + ": "
    )


def parse_answer(answer: str, run: Run) -> Decision | ReviewAction | None:
    """'y' approves every file shown, numbers approve those (1-based, as listed); 'r' rerolls,
    'm N' asks for variations of N, 'u' (with numbers) approves and upscales, when the review
    offers them (None for such a word the review cannot do: ask again); anything else
    rejects."""
    words = answer.strip().lower().replace(",", " ").split()
    shown = run.shown()
    numbers = [int(word) - 1 for word in words if word.isdigit()]
    chosen = tuple(shown[n] for n in numbers if 0 <= n < len(shown))
    head = words[0] if words else ""
    if head in {"y", "yes"}:
        return Decision(approved=True, selected=shown, by="console", at=utcnow())
    if head == "r" and ActionKind.REROLL in run.offers:
        return ReviewAction(ActionKind.REROLL, by="console", at=utcnow())
    if head == "m" and ActionKind.MORE_LIKE in run.offers and chosen:
        return ReviewAction(ActionKind.MORE_LIKE, by="console", at=utcnow(), index=chosen[0])
    if head == "u" and ActionKind.UPSCALE in run.offers:
        return Decision(
            approved=True, selected=chosen or shown, by="console", at=utcnow(), upscale=True
        )
    if head in {"r", "m", "u"}:
        return None
    if chosen:
        return Decision(approved=True, selected=chosen, by="console", at=utcnow())
    return Decision(approved=False, selected=(), by="console", at=utcnow())


class LogNotifier:
    """Prints a line for each outcome a person should know about."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out

    async def run_changed(self, run: Run, posts: Sequence[PostRecord] = ()) -> None:
        said = run.state.value
        if run.state is RunState.FAILED and run.failure is not None:
            said = run.failure.describe()  # "failed at generate: why: cause"
        text = f"run {run.id} ({run.character}): {said}"
        for post in posts:
            text += f"\n  {post.platform.value}: {post.state.value} {post.url or ''}".rstrip()
        print(text, file=self.out, flush=True)

    async def account_needs_attention(self, platform: Platform, account: str, reason: str) -> None:
        print(
            f"the {platform.value} account {account} is paused and needs a person: {reason}\n"
            f"  after fixing it: python -m pipeline accounts resume {account}",
            file=self.out,
            flush=True,
        )

    async def post_uncertain(self, record: PostRecord) -> None:
        print(
            f"run {record.run_id}: the {record.platform.value} post may or may not be online; "
            f"look at the {record.account} account and decide (it is not posted again)",
            file=self.out,
            flush=True,
        )


class TerminalProgress:
    """One status line per update: the step, ComfyUI's queue place and a sampler bar."""

    def __init__(self, out: TextIO = sys.stderr, *, min_interval: float = 0.2) -> None:
        self.out = out
        self.min_interval = min_interval
        self._last = 0.0
        self._headline: tuple[str, int | None] = ("", None)
        self.started = time.monotonic()

    def awaiting_review(self, run_id: str, waiting: bool) -> None:
        """Nothing to show: the console reviewer asks in the terminal itself."""

    def progress(self, run_id: str, update: Progress) -> None:
        """Print every change of step or queue place at once; other updates (nodes, the sampler
        bar) at most every `min_interval` seconds, except a bar's last step."""
        now = time.monotonic()
        headline = (update.step, update.queue_position)
        last_of_bar = update.value is not None and update.value == update.maximum
        if headline == self._headline and not last_of_bar and now - self._last < self.min_interval:
            return
        self._last, self._headline = now, headline
        print(render_progress(update, now - self.started), file=self.out, flush=True)


def render_progress(update: Progress, elapsed: float) -> str:
    parts = [f"[{elapsed:6.1f}s] {update.step:<9}", update.detail]
    if update.queue_position:
        parts.append(f"queue place {update.queue_position}")
    if update.value is not None and update.maximum:
        filled = round(BAR_WIDTH * update.value / update.maximum)
        parts.append(
            f"|{'#' * filled}{'.' * (BAR_WIDTH - filled)}| {update.value}/{update.maximum}"
        )
    return "  ".join(p for p in parts if p)


def _sticker_name(run: Run, index: int) -> str:
    """`"Wave" ` for a sticker pack's file (its sticker's name), else nothing."""
    if 0 <= index < len(run.stickers):
        return f'"{run.stickers[index].name}" '
    return ""
