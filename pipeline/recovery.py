"""Taking runs up after a stop: at start, and every adoption beat for runs another process left.

A run waiting for review, or for a pick between its stages, is re-armed (resumed: the Reviewer
reads the decisions made meanwhile and waits on the rest; `review_ticket` says where it
waits); any other unfinished run is resumed from its last saved step. A run another live
process holds (its lease) is left alone; once that process is gone or its lease
runs out, the next beat adopts it. The adapter says, through `Hooks`, which runs are its own,
which reviews its Reviewer can read, and how a run goes on (the bot: with its run card).
Imports the Runner, the store seam and domain models; never the bot or discord.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.errors import MediaOverloadError
from pipeline.lease import RunLeased, describe
from pipeline.models import ReviewTicket, Run, RunState
from pipeline.ports import RunStore
from pipeline.runner import Runner
from pipeline.stage_pick import pending_pick

log = logging.getLogger(__name__)

#: where a stop can leave a run (a review waiting is re-armed instead; a queued run waits for
#: the publish queue, which lives in the store and needs no resume)
INTERRUPTED = frozenset(
    state
    for state in RunState
    if not state.finished and state not in {RunState.AWAITING_REVIEW, RunState.QUEUED}
)

#: the most runs of each kind one pass looks at
PASS_LIMIT = 1000


def _every_run(run: Run) -> bool:
    return True


@dataclass(frozen=True)
class Hooks:
    """What the adapter decides. The defaults take every run up with a plain resume."""

    #: the interrupted runs this adapter resumes (the bot: its members' and the schedule's)
    owns: Callable[[Run], bool] = _every_run
    #: the reviews (and picks between stages) its Reviewer can wait on again (the bot: tickets
    #: in its review channel, read with `review_ticket`)
    reviews: Callable[[Run], bool] = _every_run
    #: goes on with a run (the bot: resumes it with its run card); None: `Runner.resume`
    resume: Callable[[Run], Awaitable[object]] | None = None


def review_ticket(run: Run) -> ReviewTicket | None:
    """Where a person's answer is awaited: the run's pick between stages while it is open,
    else its review ticket."""
    pick = pending_pick(run)
    if pick is not None and run.state is not RunState.AWAITING_REVIEW:
        return pick.ticket
    return run.ticket


class Recovery:
    """Re-arms reviews, resumes interrupted runs and adopts the runs of processes that are
    gone, through `runner` (whose leases keep two processes off one run)."""

    def __init__(self, runner: Runner, store: RunStore, hooks: Hooks | None = None) -> None:
        self.runner = runner
        self.store = store
        self.hooks = hooks or Hooks()
        self._stopped = False

    async def at_start(self) -> int:
        """Re-arm the pending reviews, then resume the interrupted runs; how many were taken
        up. Says in the log each run it leaves alone and why."""
        return await self.rearm_reviews() + await self.resume_interrupted()

    async def adopt(self) -> int:
        """The same as `at_start`, quietly (the runs left alone again and again are not
        logged each beat); 0 once `stop` was called."""
        if self._stopped:
            return 0
        return await self.rearm_reviews(quiet=True) + await self.resume_interrupted(quiet=True)

    def stop(self) -> None:
        """No more adoption: the process is shutting down."""
        self._stopped = True

    async def adopt_forever(self, interval: float) -> None:
        """Every `interval` seconds, `adopt`, until `stop` (or cancelled). The body catches and
        logs everything, so a store that is away for a while costs a warning per beat."""
        while not self._stopped:
            await asyncio.sleep(interval)
            try:
                adopted = await self.adopt()
            except MediaOverloadError as exc:
                log.warning("adopting runs failed: %s", exc.user_message)
                continue
            except Exception:
                log.exception("adopting runs failed")
                continue
            if adopted:
                log.info("took up %d run(s) that no live process held", adopted)

    async def rearm_reviews(self, *, quiet: bool = False) -> int:
        """Resume every run waiting for review that no live process holds and whose review
        the adapter's Reviewer can read; how many. `quiet` does not log the runs left alone."""
        waiting = await self.store.list_runs(states={RunState.AWAITING_REVIEW}, limit=PASS_LIMIT)
        rearmed = 0
        for run in waiting:
            if self._is_ours_already(run):
                continue
            # without a ticket a reviewer's action (a reroll, variations) is under way, or its
            # new review is not posted yet: the adapter that started the run carries it on
            ours = self.hooks.owns(run) if run.ticket is None else self.hooks.reviews(run)
            if not ours:
                if not quiet:
                    log.info("run %s: its review is not one this process reads; left alone", run.id)
                continue
            if await self._take_up(run, "re-armed", quiet=quiet):
                rearmed += 1
        if rearmed:
            log.info("re-armed %d pending review(s)", rearmed)
        return rearmed

    async def resume_interrupted(self, *, quiet: bool = False) -> int:
        """Start again, each from its last saved step, the adapter's runs that a stop left
        half done (a grace ran out, or the process died) and no live process holds; how many.
        Of two processes starting at once, the run's lease lets only one resume it."""
        runs = await self.store.list_runs(states=INTERRUPTED, limit=PASS_LIMIT)
        resumed = 0
        for run in runs:
            if self._is_ours_already(run):
                continue
            # a run waiting for a pick between its stages is taken up like a review: by the
            # adapter whose Reviewer reads where the pick waits
            picking = pending_pick(run) is not None
            if not (self.hooks.reviews(run) if picking else self.hooks.owns(run)):
                continue
            if not await self._take_up(run, "resumed", quiet=quiet):
                continue
            log.info("run %s: resumed from %s", run.id, run.state.value)
            resumed += 1
        return resumed

    def _is_ours_already(self, run: Run) -> bool:
        return self.runner.position(run.id) is not None

    async def _take_up(self, run: Run, verb: str, *, quiet: bool) -> bool:
        """Resume `run` unless another live process holds its lease (then an info line, or
        nothing when `quiet`); a failure to resume is a warning. True when resumed here."""
        try:
            held = await self.runner.held_elsewhere(run.id)
            if held is None:
                if self.hooks.resume is not None:
                    await self.hooks.resume(run)
                else:
                    await self.runner.resume(run.id)
                return True
        except RunLeased as exc:  # taken by another process between the look and the take
            held = exc.lease
        except MediaOverloadError as exc:
            log.warning("run %s: not %s: %s", run.id, verb, exc)
            return False
        if not quiet:
            log.info("run %s: not %s: another process (%s) holds it", run.id, verb,
                     describe(held.owner))  # fmt: skip
        return False


__all__ = ["INTERRUPTED", "Hooks", "Recovery", "review_ticket"]
