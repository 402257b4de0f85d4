"""`Runner`: starts runs as tasks under limits, queues the rest in order, cancels and drains.

Limits (global, per character, per requester) queue a run instead of refusing it; `position`
tells its place. A run waiting for review holds no place under the limits (a review may take a
day; the run says so through its handle's `awaiting_review`). Tasks are kept referenced and
their failures logged. Each run is executed only under its lease (`pipeline.lease`), taken
before it is queued, renewed while it waits or runs, released when it ends: no other process
executes it meanwhile. `cancel` ends a run running here, queued here, or stopped and held by
no live process. Knows nothing of Discord; `pipeline.wiring.build_runner` builds it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pipeline.errors import RunError, StoreError
from pipeline.lease import Leases, Owner, WallClock, describe, this_process
from pipeline.logs import run_context
from pipeline.models import (
    Job,
    PostState,
    Run,
    RunFailure,
    RunState,
    refuse_if_pruned,
    retry_changes_nothing,
    utcnow,
)
from pipeline.ports import Lease, Progress, ProgressSink, RunnerStore

log = logging.getLogger(__name__)

Execute = Callable[[Run, ProgressSink | None], Awaitable[Run]]
#: takes a stopped run's unfinished ComfyUI prompts off their servers; how many there were
#: (a server that cannot be told is its to log, not to raise)
Withdraw = Callable[[Run], Awaitable[int]]


@dataclass
class _Entry:
    run: Run
    sink: ProgressSink | None
    done: asyncio.Future[Run] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    task: asyncio.Task[Run] | None = None
    #: waiting for a person's review: not counted against the limits until it moves on
    parked: bool = False
    #: renews the run's lease from the moment it is queued until it ends
    keeper: asyncio.Task[None] | None = None
    #: another process took the lease from us (ours had expired): the run stops unsaved
    lost: bool = False

    @property
    def requester(self) -> str:
        return self.run.job.requested_by


class _RunHandle:
    """What the Runner hands a run as its sink: the run's explicit `awaiting_review` signal
    parks it (its place under the limits is free while a person decides) and unparks it; every
    update goes on to the caller's sink."""

    def __init__(self, runner: Runner, entry: _Entry) -> None:
        self._runner = runner
        self._entry = entry

    def progress(self, run_id: str, update: Progress) -> None:
        if self._entry.sink is not None:
            self._entry.sink.progress(run_id, update)

    def awaiting_review(self, run_id: str, waiting: bool) -> None:
        if waiting != self._entry.parked:
            self._entry.parked = waiting
            if waiting:
                self._runner._pump()  # its place is free for the next run
        if self._entry.sink is not None:
            self._entry.sink.awaiting_review(run_id, waiting)


class Runner:
    """Runs pipeline runs as tasks: at most `max_runs` at once, `max_per_character` of one
    character and `max_per_requester` of one person; the rest wait in order. Runs waiting for
    review are not counted (they count again once approved, while they publish)."""

    def __init__(
        self,
        store: RunnerStore,
        execute: Execute,
        *,
        max_runs: int = 3,
        max_per_character: int = 1,
        max_per_requester: int = 2,
        shutdown_grace: float = 30.0,
        detach: Callable[[], None] | None = None,
        withdraw: Withdraw | None = None,
        lease_ttl: float = 90.0,
        owner: Owner | None = None,
        clock: WallClock = utcnow,
    ) -> None:
        """`detach` is called when shutdown's grace is over, just before the runs still going
        are cancelled: it tells their outside work (ComfyUI prompts) to stay where it is, so
        the next start's resume takes it over. A person's `cancel` never calls it.
        `withdraw` takes the prompts of a stopped run that `cancel` ends off ComfyUI (a
        running run's prompts go with its task).
        Leases last `lease_ttl` seconds and are renewed every third of it, as `owner` (this
        process by default; tests name another), their expiry judged by `clock`."""
        self._store = store
        self._leases = Leases(store, owner or this_process(), lease_ttl, clock=clock)
        self._execute = execute
        self.max_runs = max_runs
        self.max_per_character = max_per_character
        self.max_per_requester = max_per_requester
        self.shutdown_grace = shutdown_grace
        self._detach = detach
        self._withdraw = withdraw
        self._waiting: list[_Entry] = []
        self._running: dict[str, _Entry] = {}
        self._cancel_requested: set[str] = set()
        self._closing = False

    # ------------------------------------------------------------------ asking
    async def submit(
        self, job: Job, *, sink: ProgressSink | None = None, run_id: str | None = None
    ) -> Run:
        """Create and save a new run for `job` and queue it; returns at once. Its lease is
        taken before it is saved, so no other process ever sees it unleased. `run_id` is the
        id an adapter chose beforehand (to put the job's input image in the run's folder)."""
        run = Run.new(job, run_id=run_id)

        async def save() -> Run:
            await self._store.save_run(run)
            return run

        queued = await self._queue_under_lease(run.id, save, sink)
        assert queued is not None, "a saved run is queued or refused"
        return queued

    async def submit_claimed(
        self,
        run: Run,
        claim: Callable[[Run], Awaitable[bool]],
        *,
        sink: ProgressSink | None = None,
    ) -> bool:
        """Queue the new `run`, which `claim` saves together with something else in one
        transaction (the schedule's slot), under its lease taken before the save: no other
        process's adoption takes the run up between its save and its start. False when
        `claim` declines (nothing saved, nothing queued, no lease left). Raises RunError
        while shutting down, the run saved by then: a resume after the restart runs it."""

        async def save() -> Run | None:
            return run if await claim(run) else None

        return await self._queue_under_lease(run.id, save, sink) is not None

    async def resume(self, run_id: str, *, sink: ProgressSink | None = None) -> Run:
        """Queue a stopped, failed or expired run again from its last finished step. Raises
        RunLeased (a RunError saying who and until when) while another live process holds
        the run's lease."""

        async def reload() -> Run:
            # read under the lease: no other process moves the run (or prunes its media)
            # between this check and the run's first step
            run = await self._store.load_run(run_id)
            if run is None:
                raise RunError(f"no run with id {run_id}")
            if run.state in {RunState.PUBLISHED, RunState.REJECTED, RunState.CANCELLED}:
                raise RunError(f"run {run_id} is {run.state.value}; there is nothing to resume")
            refuse_if_pruned(run)
            if run.state is RunState.FAILED and retry_changes_nothing(
                run, posts := await self._store.posts_for_run(run_id)
            ):
                uncertain = [p.platform.value for p in posts if p.state is PostState.UNCERTAIN]
                which = f"{', '.join(uncertain)} post" + (" is" if len(uncertain) == 1 else "s are")
                raise RunError(
                    f"run {run_id} failed at publishing and its {which} uncertain: it may be "
                    "online already and is never posted again by itself, so there is nothing to "
                    'resume; look at the account and settle it (README, "Paused accounts and '
                    'uncertain posts")'
                )
            return run

        queued = await self._queue_under_lease(run_id, reload, sink)
        assert queued is not None, "a resumed run is queued or refused"
        return queued

    @property
    def leases(self) -> Leases:
        """This Runner's leases (its process's owner): other work on a run, such as a prune,
        holds the run through them."""
        return self._leases

    async def held_elsewhere(self, run_id: str) -> Lease | None:
        """The lease of another live process on `run_id` (it executes the run), else None."""
        return await self._leases.held_elsewhere(run_id)

    def position(self, run_id: str) -> int | None:
        """0 while running, 1.. while waiting (1 = next), None when unknown or finished."""
        if run_id in self._running:
            return 0
        for index, entry in enumerate(self._waiting):
            if entry.run.id == run_id:
                return index + 1
        return None

    def active(self) -> list[str]:
        """Ids of running runs, then waiting ones in order."""
        return [*self._running, *(entry.run.id for entry in self._waiting)]

    async def wait(self, run_id: str) -> Run:
        """The run as it ended (published, rejected, failed, cancelled or left for resume)."""
        entry = self._running.get(run_id) or next(
            (e for e in self._waiting if e.run.id == run_id), None
        )
        if entry is None:
            run = await self._store.load_run(run_id)
            if run is None:
                raise RunError(f"no run with id {run_id}")
            return run
        return await asyncio.shield(entry.done)

    async def cancel(self, run_id: str) -> Run:
        """Stop a run and save it as cancelled; the run as it ended. A waiting one leaves the
        queue; a running one is cancelled with its ComfyUI jobs (it may have finished first:
        then it is returned as it ended); a stopped one (interrupted, failed, expired, or its
        review no one waits on) is cancelled under its lease and its unfinished ComfyUI prompts
        withdrawn. Raises RunError when there is no such run or it is finished already, and
        RunLeased (saying which process) when another live process holds it: cancel it there."""
        for entry in self._waiting:
            if entry.run.id == run_id:
                self._waiting.remove(entry)
                try:
                    cancelled = await self._mark_cancelled(entry.run)
                finally:
                    await self._end_lease(entry)
                entry.done.set_result(cancelled)
                return cancelled
        entry_running = self._running.get(run_id)
        if entry_running is not None and entry_running.task is not None:
            self._cancel_requested.add(run_id)
            entry_running.task.cancel()
            await asyncio.wait({entry_running.task})
            return await asyncio.shield(entry_running.done)
        return await self._cancel_stopped(run_id)

    async def _cancel_stopped(self, run_id: str) -> Run:
        """`cancel` for a run this Runner does not run: under its lease, so no process starts
        it meanwhile, and its prompts withdrawn before the lease goes (a resume elsewhere
        would take them over)."""
        run = await self._store.load_run(run_id)
        if run is None:
            raise RunError(f"no run with id {run_id}")
        if run.state.finished:
            raise RunError(f"run {run_id} is already {run.state.value}")
        await self._leases.take_or_refuse(run_id)
        if self._is_active(run_id):  # queued here meanwhile: the lease is its entry's
            return await self.cancel(run_id)
        try:
            latest = await self._store.load_run(run_id) or run
            if latest.state.finished:
                raise RunError(f"run {run_id} is already {latest.state.value}")
            cancelled = await self._mark_cancelled(latest)
            log.info("run %s: cancelled from %s", run_id, latest.state.value)
            # a ComfyUI that cannot be told is the withdraw's to report: the cancel stands
            if self._withdraw is not None and (count := await self._withdraw(cancelled)):
                log.info("run %s: took %d unfinished prompt(s) off ComfyUI", run_id, count)
        finally:
            await self._release(run_id)
        return cancelled

    async def shutdown(self) -> None:
        """Stop taking runs; let running ones finish for `shutdown_grace` seconds, then cancel
        them, leaving their ComfyUI prompts queued (`detach`). Every run keeps its last saved
        step and can be resumed on the next start, which takes those prompts over."""
        self._closing = True
        waiting = list(self._waiting)
        self._waiting.clear()
        for entry in waiting:
            entry.done.set_result(entry.run)
        for entry in waiting:  # released: the next start (here or elsewhere) resumes at once
            await self._end_lease(entry)
        tasks = {e.task for e in self._running.values() if e.task is not None}
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace)
        if pending and self._detach is not None:
            self._detach()  # their ComfyUI prompts go on, for the resume after the restart
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # ------------------------------------------------------------------ machinery
    def _refuse_when_closing(self) -> None:
        if self._closing:
            raise RunError("the runner is shutting down; try again after the restart")

    def _is_active(self, run_id: str) -> bool:
        return run_id in self._running or any(e.run.id == run_id for e in self._waiting)

    async def _queue_under_lease(
        self, run_id: str, ready: Callable[[], Awaitable[Run | None]], sink: ProgressSink | None
    ) -> Run | None:
        """Take `run_id`'s lease (RunLeased when another live process holds it), let `ready`
        save the run or read and check it under the lease, and queue what it gives. None,
        and the lease given back, when `ready` gives nothing; the lease is given back too
        when anything fails before the run is queued."""
        if self._is_active(run_id):
            raise RunError(f"run {run_id} is already queued or running")
        await self._leases.take_or_refuse(run_id)
        try:
            run = await ready()
            if run is not None:
                if self._is_active(run_id):  # queued by another call meanwhile: its lease
                    raise RunError(f"run {run_id} is already queued or running")
                self._refuse_when_closing()
        except BaseException:
            if not self._is_active(run_id):
                await self._release(run_id)
            raise
        if run is None:
            await self._release(run_id)
            return None
        entry = _Entry(run=run, sink=sink)
        entry.keeper = asyncio.create_task(self._keep_lease(entry), name=f"lease-{run_id}")
        self._waiting.append(entry)
        self._pump()
        return run

    async def _keep_lease(self, entry: _Entry) -> None:
        """Renew the lease every third of its TTL while the run waits, runs or waits for a
        review (which may take a day). A store that does not answer is logged and tried again
        at the next beat: a blip shorter than the TTL costs nothing. A lease someone else
        holds means ours expired and another process took the run up from its last save:
        see `_lose`."""
        run_id = entry.run.id
        with run_context(run_id):
            while True:
                await asyncio.sleep(self._leases.ttl / 3)
                try:
                    renewed = await self._leases.renew(run_id)
                    holder = None if renewed else await self._store.lease_of(run_id)
                except StoreError as exc:
                    log.warning("run %s: lease not renewed (%s); next try in %.0f s",
                                run_id, exc.user_message, self._leases.ttl / 3)  # fmt: skip
                    continue
                except Exception:
                    log.exception("run %s: lease not renewed; trying again", run_id)
                    continue
                if not renewed:
                    self._lose(entry, holder)
                    return

    def _lose(self, entry: _Entry, holder: Lease | None) -> None:
        """Our lease expired (the store was away longer than the TTL) and another process
        took the run up: it holds the lease now, or held it and let it go (it may have ended
        the run). The choice: stop at once and save nothing more, never take the lease back.
        That process went on from the last save we made; any later save of ours (a step, a
        failure, a cancel) would write over its work, and cancelling the task ends the step
        in progress before its save. Known cost: the cancel still takes the run's ComfyUI
        prompts off as a person's cancel does (the detach is pool-wide), so a new holder that
        had taken those prompts over sees them fail and fails or retries that step."""
        who = describe(holder.owner) if holder is not None else "no one (it was let go)"
        log.error(
            "run %s: its lease is held by %s now (ours expired while the store was away); "
            "stopping here without saving, the run is that process's now",
            entry.run.id, who,
        )  # fmt: skip
        entry.lost = True
        if entry in self._waiting:
            self._waiting.remove(entry)
            entry.done.set_result(entry.run)
        elif entry.task is not None:
            entry.task.cancel()

    async def _end_lease(self, entry: _Entry) -> None:
        """Stop renewing; give the lease up unless someone else holds it now."""
        keeper = entry.keeper
        if keeper is not None and keeper is not asyncio.current_task():
            keeper.cancel()
            await asyncio.wait({keeper})
        if not entry.lost:
            await self._release(entry.run.id)

    async def _release(self, run_id: str) -> None:
        await self._leases.let_go(run_id)

    def _allowed(self, entry: _Entry) -> bool:
        if entry.run.state is RunState.AWAITING_REVIEW:
            return True  # re-armed after a restart: it only waits for a person
        running = [e for e in self._running.values() if not e.parked]
        if len(running) >= self.max_runs:
            return False
        same_character = sum(e.run.character == entry.run.character for e in running)
        same_requester = sum(e.requester == entry.requester for e in running)
        return same_character < self.max_per_character and same_requester < self.max_per_requester

    def _pump(self) -> None:
        for entry in list(self._waiting):
            if self._allowed(entry):
                self._waiting.remove(entry)
                self._start(entry)

    def _start(self, entry: _Entry) -> None:
        run_id = entry.run.id
        self._running[run_id] = entry
        entry.parked = entry.run.state is RunState.AWAITING_REVIEW
        entry.task = asyncio.create_task(self._guarded(entry), name=f"run-{run_id}")
        entry.task.add_done_callback(lambda task: self._finished(entry, task))

    async def _guarded(self, entry: _Entry) -> Run:
        with run_context(entry.run.id):
            try:
                return await self._execute_once(entry)
            finally:
                await self._end_lease(entry)

    async def _execute_once(self, entry: _Entry) -> Run:
        try:
            return await self._execute(entry.run, _RunHandle(self, entry))
        except asyncio.CancelledError:
            if entry.lost:
                return entry.run  # nothing saved: the run is the new holder's
            if entry.run.id in self._cancel_requested:
                latest = await self._store.load_run(entry.run.id) or entry.run
                return await self._mark_cancelled(latest)
            raise
        except StoreError as exc:
            # nothing can be saved now, not even a failure: the run keeps its last saved
            # step, and `resume` (or the bot's next start) carries it on
            log.error(
                "run %s stopped: %s; it keeps its last saved step and can be resumed",
                entry.run.id, exc.user_message,
            )  # fmt: skip
            return entry.run
        except Exception:
            log.exception("run %s stopped by an unexpected error", entry.run.id)
            if entry.lost:
                return entry.run
            latest = await self._store.load_run(entry.run.id) or entry.run
            if latest.state.finished:
                return latest
            failed = latest.advance(
                RunState.FAILED,
                failure=RunFailure(state=latest.state, message="an unexpected error"),
            )
            await self._store.save_run(failed)
            return failed

    async def _mark_cancelled(self, run: Run) -> Run:
        if run.state.finished:
            return run
        cancelled = run.advance(RunState.CANCELLED)
        await self._store.save_run(cancelled)
        return cancelled

    def _finished(self, entry: _Entry, task: asyncio.Task[Run]) -> None:
        self._running.pop(entry.run.id, None)
        self._cancel_requested.discard(entry.run.id)
        if task.cancelled():
            log.info("run %s stopped for shutdown; resume it later", entry.run.id)
            if not entry.done.done():
                entry.done.set_result(entry.run)
        elif (error := task.exception()) is not None:
            log.error("run %s task failed: %r", entry.run.id, error)
            if not entry.done.done():
                entry.done.set_result(entry.run)
        elif not entry.done.done():
            entry.done.set_result(task.result())
        if not self._closing:
            self._pump()
