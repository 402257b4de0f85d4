"""Run leases: which process executes a run, so no two processes (two bot instances, the bot
and `python -m pipeline resume`) ever execute the same run at once.

An owner id is `host:pid:token` (a random token per process). A lease is good until it expires,
unless its holder is plainly dead: on this host with a pid that is not alive, or this very pid
with another token (a container restarted as pid 1). "Now" comes from a `WallClock` the caller
may inject (tests move time on by hand). Imports the store seam and errors only.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from pipeline.errors import RunError, StoreError
from pipeline.models import utcnow
from pipeline.ports import Lease, LeaseStore

log = logging.getLogger(__name__)

#: what time it is now (timezone-aware, UTC; not the monotonic `pipeline.llm.limits.Clock`):
#: `utcnow` unless a test injects its own
WallClock = Callable[[], datetime]


@dataclass(frozen=True)
class Owner:
    """A process that may hold leases; `str(owner)` is what the store keeps."""

    host: str
    pid: int
    token: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The owner an id names; None for an id not of this form."""
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        if not host or not pid.isdigit():
            return None
        return cls(host=host, pid=int(pid), token=rest)

    def describe(self) -> str:
        """For people: which process (the token says nothing to them)."""
        return f"pid {self.pid} on {self.host}"


@cache
def this_process() -> Owner:
    """This process's owner id; the same for every Runner it has."""
    return Owner(host=socket.gethostname(), pid=os.getpid(), token=secrets.token_hex(6))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def describe(owner: str) -> str:
    parsed = Owner.parse(owner)
    return parsed.describe() if parsed is not None else owner


def holder_is_gone(holder_id: str, me: Owner) -> bool:
    """Whether the process `holder_id` names is dead for sure, as `me` can tell: on our host
    with a dead pid, or our pid under another token (this process is a new one under the same
    pid, e.g. pid 1 of a container). Never for `me` itself, nor for another host's process."""
    holder = Owner.parse(holder_id)
    if holder is None or holder.host != me.host or holder_id == str(me):
        return False
    if holder.pid == me.pid:
        return True
    return not _pid_alive(holder.pid)


class Leases:
    """One owner's leases over a store, each good for `ttl` seconds after its last renewal;
    expiry is judged by `clock` (the store is told its "now" on every take)."""

    def __init__(
        self, store: LeaseStore, owner: Owner, ttl: float, *, clock: WallClock = utcnow
    ) -> None:
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self.clock = clock

    def is_ours(self, lease: Lease) -> bool:
        return lease.owner == str(self.owner)

    def is_stale(self, lease: Lease) -> bool:
        """The holder is dead for sure (see `holder_is_gone`)."""
        return holder_is_gone(lease.owner, self.owner)

    def is_live(self, lease: Lease | None) -> bool:
        """Someone else holds it and may still be working on it."""
        if lease is None or self.is_ours(lease):
            return False
        return lease.expires_at > self.clock() and not self.is_stale(lease)

    async def held_elsewhere(self, run_id: str) -> Lease | None:
        """The lease of another live process on `run_id`, or None (a read, no take)."""
        lease = await self.store.lease_of(run_id)
        return lease if self.is_live(lease) else None

    async def take(self, run_id: str) -> Lease:
        """Take or renew `run_id`'s lease; the holder's lease when another live process holds
        it (the caller compares with `is_ours`). Raises StoreError when the store is away."""
        now = self.clock()
        until = now + timedelta(seconds=self.ttl)
        me = str(self.owner)
        lease = await self.store.take_lease(run_id, me, until, now=now)
        if not self.is_ours(lease) and self.is_stale(lease):
            log.info("run %s: taking the lease of %s, which is gone", run_id, lease.owner)
            lease = await self.store.take_lease(run_id, me, until, replacing=lease.owner, now=now)
        return lease

    async def renew(self, run_id: str) -> bool:
        """Renew a lease we hold; False when it is no longer ours (never takes it back, even
        from a dead holder: whoever had it since may have saved steps we know nothing of)."""
        until = self.clock() + timedelta(seconds=self.ttl)
        return await self.store.renew_lease(run_id, str(self.owner), until)

    async def take_or_refuse(self, run_id: str) -> None:
        """Take `run_id`'s lease, or raise RunLeased saying who holds it and until when."""
        lease = await self.take(run_id)
        if not self.is_ours(lease):
            raise RunLeased(lease)

    async def release(self, run_id: str) -> None:
        await self.store.release_lease(run_id, str(self.owner))

    async def let_go(self, run_id: str) -> None:
        """`release`, where a store that does not answer only costs a warning: the lease then
        expires by itself after its TTL."""
        try:
            await self.release(run_id)
        except StoreError as exc:
            log.warning("run %s: lease not released (%s); it expires in %.0f s",
                        run_id, exc.user_message, self.ttl)  # fmt: skip


class RunLeased(RunError):
    """Another live process executes the run now."""

    def __init__(self, lease: Lease) -> None:
        until = lease.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(
            f"run {lease.run_id} is being run by another process ({describe(lease.owner)}); "
            f"its lease holds until {until} unless renewed"
        )
        self.lease = lease


__all__ = [
    "Leases",
    "Owner",
    "RunLeased",
    "WallClock",
    "describe",
    "holder_is_gone",
    "this_process",
]
