"""Publishing a run's approved media once and only once, with failures a person can act on.

For each platform: a post record (run, platform, account) is written as POSTING before the
remote call and gets the remote id after; the store's unique key makes a second record, and so
a second post, impossible. A record found POSTING (a crash between the remote call and the
store) is checked against the account's latest posts: found -> POSTED, else UNCERTAIN and a
person is told. Transient failures are retried with backoff; an account failure pauses the
account; a content failure fails at once. Every attempt is kept on the record.
Imports domain modules, ports and the publish helpers; never a concrete platform client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from pathlib import Path

from pipeline.captions import caption_problems, compose_caption
from pipeline.characters import Character
from pipeline.errors import ConfigError, PublishError, RunError
from pipeline.models import (
    MediaKind,
    Platform,
    PostAttempt,
    PostRecord,
    PostState,
    Run,
    RunFailure,
    RunState,
    utcnow,
)
from pipeline.ports import OutgoingMedia, PostStore, Publisher, PublishNotifier, RemotePost
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
    scrub,
)
from pipeline.publish.media import (
    FITTED_MIME,
    FittedMedia,
    find_fitted,
    fit_media,
    fitted_stem,
    media_kind,
)
from pipeline.publish.stickers import unfinished

log = logging.getLogger(__name__)

#: the platforms as people name them
_NAMES = {
    Platform.TWITTER: "X",
    Platform.INSTAGRAM: "Instagram",
    Platform.BLUESKY: "Bluesky",
    Platform.FACEBOOK: "Facebook",
    Platform.THREADS: "Threads",
}


def caption_for(run: Run, character: Character, platform: Platform) -> str:
    """The reviewer's caption for `platform` if they changed it, else the run's, with prefix."""
    decided = run.decision.captions if run.decision else {}
    text = decided.get(platform.value) or run.captions.get(platform.value) or ""
    config = character.spec.social_media.platforms.get(platform)
    return compose_caption(config.prefix if config else "", text)


def caption_problem(platform: Platform, caption: str) -> str | None:
    """Why a caption would be refused (length, Instagram's hashtags), checked before anything
    is sent; None when fine. A reviewer's edit is refused in Discord already (bot/review.py);
    this catches the rest (a caption set by hand in the store)."""
    return "; ".join(caption_problems(platform, caption)) or None


def outgoing(fitted: FittedMedia, alt_text: str = "") -> OutgoingMedia:
    return OutgoingMedia(fitted.path, fitted.kind, fitted.mime, alt_text, fitted.cover)


def _outgoing_from_path(path: Path, alt_text: str) -> OutgoingMedia:
    """A fitted file found on disk (see `media.fitted_stem`): its kind by the one definition
    (blocking: it may look into a GIF), its type by the suffix the fitter gave it; a video has
    the fitter's cover beside it."""
    kind = media_kind(path)
    mime = FITTED_MIME.get(path.suffix.lower(), "image/jpeg")
    cover = path.with_name(path.stem + ".cover.jpg") if mime == "video/mp4" else None
    return OutgoingMedia(path, kind, mime, alt_text, cover)


def _find_outgoing(run_dir: Path, platform: Platform, index: int, alt: str) -> OutgoingMedia | None:
    """The fitted file of media item `index` as it is posted, or None when it was not made."""
    found = find_fitted(run_dir, platform, index)
    return None if found is None else _outgoing_from_path(found, alt)


async def fit_run_media(
    run: Run,
    character: Character,
    run_dir: Path,
    *,
    indexes: Sequence[int] | None = None,
    platforms: Collection[Platform] | None = None,
    preset: str = "veryfast",
) -> dict[Platform, list[FittedMedia]]:
    """Fit the run's kept media (or `indexes`) for each enabled platform, before review, into
    `run_dir/fitted/<platform>/<index>.*`; publishing later posts exactly those files."""
    chosen = list(indexes) if indexes is not None else [
        i for i, item in enumerate(run.media) if item.kept
    ]  # fmt: skip
    result: dict[Platform, list[FittedMedia]] = {}
    for platform, config in character.enabled_platforms().items():
        if platforms is not None and platform not in platforms:
            continue
        result[platform] = [
            await fit_media(
                run_dir / run.media[i].path,
                platform,
                fitted_stem(run_dir, platform, i),
                fit=config.fit,
                preset=preset,
            )
            for i in chosen
        ]
    return result


#: how many images one post carries (an X or Bluesky post: 4; an Instagram album or a Facebook
#: multi-photo post: 10); a video goes alone
POST_CAPACITY = {
    Platform.TWITTER: 4,
    Platform.INSTAGRAM: 10,
    Platform.BLUESKY: 4,
    Platform.FACEBOOK: 10,
    Platform.THREADS: 10,
}


def postable(run: Run, platform: Platform) -> tuple[int, ...]:
    """The selected media one post on `platform` carries, in the reviewer's order: the first
    selected file alone when it is a video, else the selected images up to the platform's count.

    A reviewer approves what is good, not what fits: six approved images still make one X post
    (of the first four), and a second clip is simply not part of it."""
    assert run.decision is not None
    selected = [i for i in run.decision.selected if 0 <= i < len(run.media)]
    if not selected:
        return tuple(run.decision.selected)  # out-of-range choices are refused later, by name
    if run.media[selected[0]].kind is MediaKind.VIDEO:
        return (selected[0],)
    images = [i for i in selected if run.media[i].kind is MediaKind.IMAGE]
    return tuple(images[: POST_CAPACITY[platform]])


def start_of_day(character: Character, now: datetime) -> datetime:
    """Midnight of `now`'s day in the character's schedule time zone (the budget's day)."""
    local = now.astimezone(character.schedule.zone)
    return datetime.combine(local.date(), time(0), tzinfo=character.schedule.zone)


def end_state(run: Run, character: Character, posts: Sequence[PostRecord]) -> Run:
    """A run's state once publishing is over: published when every platform enabled for
    `character` has a POSTED record and every chosen sticker of a pack is uploaded, else failed
    at publishing, naming each other platform (and sticker) and its record's state ("not
    tried" without one), so a resume or `publish RUN_ID` tries again. The run itself when that
    is its state already."""
    states = {p.platform: p.state for p in posts}
    missing = [
        f"{platform.value} ({states[platform].value if platform in states else 'not tried'})"
        for platform in character.enabled_platforms()
        if states.get(platform) is not PostState.POSTED
    ]
    missing += unfinished(run)  # a sticker pack's stickers, each uploaded to the guild
    state, failure = RunState.PUBLISHED, None
    if missing:
        message = "not posted: " + ", ".join(missing)
        state, failure = RunState.FAILED, RunFailure(state=RunState.PUBLISHING, message=message)
    if run.state is state and run.failure == failure:
        return run
    return run.advance(state, failure=failure)


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: `retries` more tries, waits doubling from
    `backoff` seconds; a platform asking for more than `max_wait` seconds fails the post."""

    retries: int = 3
    backoff: float = 5.0
    max_wait: float = 900.0


class PublishService:
    """Publishes runs; one per process (the bot and the command line each build one)."""

    def __init__(
        self,
        store: PostStore,
        publishers: Mapping[Platform, Publisher],
        attention: AttentionBoard,
        *,
        notifier: PublishNotifier | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.publishers = dict(publishers)
        self.attention = attention
        self.notifier = notifier
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self._in_flight: set[tuple[str, Platform]] = set()

    # ------------------------------------------------------------------ the entry point
    async def publish_run(
        self,
        run: Run,
        character: Character,
        run_dir: Path,
        *,
        platforms: Collection[Platform] | None = None,
        retry_failed: bool = False,
    ) -> list[PostRecord]:
        """Publish an approved run's selected media to each enabled platform, at most once.

        A platform that already has a record is not posted again: POSTED and UNCERTAIN stay as
        they are, POSTING is checked against the account's latest posts, and FAILED is tried
        again only with `retry_failed` (the `publish RUN_ID` command). Returns the run's post
        records for the platforms handled."""
        if run.decision is None or not run.decision.approved:
            raise RunError(f"run {run.id} is not approved, so it cannot be published")
        if not run.decision.selected:
            raise RunError(f"run {run.id} has no selected media to publish")
        enabled = character.enabled_platforms()
        wanted = [p for p in enabled if platforms is None or p in platforms]
        if platforms is not None and not wanted:
            names = ", ".join(p.value for p in platforms)
            raise RunError(f"{names} is not enabled for {character.key}")
        existing = {r.platform: r for r in await self.store.posts_for_run(run.id)}
        records: list[PostRecord] = []
        for platform in wanted:
            account = enabled[platform].credentials
            records.append(
                await self._publish_one(
                    run, character, run_dir, platform, account, existing.get(platform),
                    retry_failed=retry_failed,
                )
            )  # fmt: skip
        return records

    async def run_after_publishing(self, run: Run, character: Character) -> Run:
        """The run as publishing leaves it, by its post records in the store (the one rule,
        for the pipeline's publish step and `publish RUN_ID` alike): see `end_state`."""
        return end_state(run, character, await self.store.posts_for_run(run.id))

    async def recover(
        self, run: Run, character: Character, *, older_than: timedelta = timedelta(0)
    ) -> list[PostRecord]:
        """Settle the run's POSTING records left by a crash (call at start for each run in
        state `publishing`); records younger than `older_than` are left alone."""
        settled = []
        for record in await self.store.posts_for_run(run.id):
            if record.state is not PostState.POSTING:
                continue
            if (run.id, record.platform) in self._in_flight:
                continue
            if self.clock() - record.updated_at < older_than:
                continue
            settled.append(await self._settle(record, caption_for(run, character, record.platform)))
        return settled

    # ------------------------------------------------------------------ one platform
    async def _publish_one(
        self,
        run: Run,
        character: Character,
        run_dir: Path,
        platform: Platform,
        account: str,
        record: PostRecord | None,
        *,
        retry_failed: bool,
    ) -> PostRecord:
        caption = caption_for(run, character, platform)
        if record is not None:
            if record.state is PostState.POSTING and (run.id, platform) not in self._in_flight:
                return await self._settle(record, caption)
            if record.state is not PostState.FAILED or not retry_failed:
                log.info("run %s: %s already %s, not posted again", run.id, platform, record.state)
                return record
        publisher = self.publishers.get(platform)
        now = self.clock()
        refusal = await self._refusal(run.id, character, platform, account, caption, publisher, now)
        claim = PostRecord(
            run_id=run.id,
            platform=platform,
            account=account,
            state=PostState.FAILED if refusal else PostState.POSTING,
            error=refusal,
            attempts=(
                *(record.attempts if record else ()),
                PostAttempt(now, "refused" if refusal else "posting", refusal or ""),
            ),
            created_at=record.created_at if record else now,
            updated_at=now,
        )
        if record is None:
            claimed = await self.store.record_post(claim)
        elif refusal:
            await self.store.update_post(claim)
            return claim
        else:
            claimed = await self.store.retry_post(claim)
        if not claimed:  # someone else holds this post: never a second one
            current = {r.platform: r for r in await self.store.posts_for_run(run.id)}
            log.warning("run %s: %s post is someone else's, left alone", run.id, platform)
            return current.get(platform, claim)
        if refusal or publisher is None:
            log.warning("run %s: %s not posted: %s", run.id, platform, refusal)
            return claim
        self._in_flight.add((run.id, platform))
        try:
            media = await self._media(run, character, run_dir, platform)
            return await self._post(claim, publisher, media, caption)
        finally:
            self._in_flight.discard((run.id, platform))

    async def _refusal(
        self,
        run_id: str,
        character: Character,
        platform: Platform,
        account: str,
        caption: str,
        publisher: Publisher | None,
        now: datetime,
    ) -> str | None:
        """Why this post must not be tried now (written as a FAILED record), or None."""
        if publisher is None:
            return f"no {platform.value} publisher is configured"
        pause = await asyncio.to_thread(self.attention.paused, platform, account)
        if pause is not None:
            return (
                f"the {platform.value} account {account} is paused: {pause.reason}. Once a person"
                f" fixed it and ran `python -m pipeline accounts resume {account}`,"
                f" `python -m pipeline publish {run_id}` posts it"
            )
        budget = character.schedule.daily_budget.get(platform)
        if budget is not None:
            used = await self.store.count_posts(
                platform.value, account, start_of_day(character, now)
            )
            if used >= budget:
                return (
                    f"the daily budget of {budget} {platform.value} posts is used up;"
                    f" `python -m pipeline publish {run_id}` posts it on a later day"
                )
        return await asyncio.to_thread(caption_problem, platform, caption)  # X's counter: CPU

    async def _media(
        self, run: Run, character: Character, run_dir: Path, platform: Platform
    ) -> list[OutgoingMedia]:
        """The fitted files of the media this post carries (fitted now if review did not)."""
        assert run.decision is not None
        config = character.enabled_platforms()[platform]
        chosen = postable(run, platform)
        if len(chosen) < len(run.decision.selected):
            log.info(
                "run %s: %s takes %d of the %d approved files",
                run.id, platform.value, len(chosen), len(run.decision.selected),
            )  # fmt: skip
        items = []
        for index in chosen:
            if not 0 <= index < len(run.media):
                raise RunError(f"run {run.id} selects media {index}, which it does not have")
            item = run.media[index]
            alt = run.descriptions[item.description_index][:1000] if (
                0 <= item.description_index < len(run.descriptions)
            ) else ""  # fmt: skip
            found = await asyncio.to_thread(_find_outgoing, run_dir, platform, index, alt)
            if found is not None:
                items.append(found)
            else:
                fitted = await fit_media(
                    run_dir / item.path,
                    platform,
                    fitted_stem(run_dir, platform, index),
                    fit=config.fit,
                )
                items.append(outgoing(fitted, alt))
        return items

    async def _post(
        self,
        record: PostRecord,
        publisher: Publisher,
        media: Sequence[OutgoingMedia],
        caption: str,
    ) -> PostRecord:
        """Try the remote post, retrying transient failures; the record after each try."""
        tries = self.policy.retries + 1
        for attempt in range(tries):
            try:
                remote = await publisher.post(record.account, media, caption)
            except TransientPublishError as exc:
                if exc.maybe_posted:
                    message = (
                        f"{exc.user_message} The post may have gone through, so the account's"
                        " posts are checked; it is not posted again."
                    )
                    record = await self._attempt(record, "transient", message, str(exc))
                    return await self._settle(record, caption)
                wait = exc.retry_after
                if wait is None:
                    wait = self.policy.backoff * 2**attempt
                again = f"`python -m pipeline publish {record.run_id}` tries again."
                if wait > self.policy.max_wait:
                    message = (
                        f"{exc.user_message} It asked for a wait of {wait:.0f} s, longer than"
                        f" PUBLISH_MAX_WAIT_SECONDS ({self.policy.max_wait:.0f} s), so nothing"
                        f" retries it by itself: {again}"
                    )
                elif attempt + 1 == tries:
                    message = (
                        f"{exc.user_message} Gave up after {tries} tries; nothing retries it"
                        f" by itself: {again}"
                    )
                else:
                    message = f"{exc.user_message} Trying again in {wait:.0f} s."
                    record = await self._attempt(record, "transient", message, str(exc))
                    log.info(
                        "run %s: %s busy; retry in %.0fs", record.run_id, record.platform, wait
                    )
                    await self.sleep(wait)
                    continue
                record = await self._attempt(record, "transient", message, str(exc))
                return await self._finish(record, PostState.FAILED, error=message)
            except AccountAttentionError as exc:
                record = await self._attempt(record, "account", exc.user_message, str(exc))
                record = await self._finish(record, PostState.FAILED, error=exc.user_message)
                await self._pause(record.platform, record.account, exc.reason)
                return record
            except ContentRejectedError as exc:
                record = await self._attempt(record, "rejected", exc.user_message, str(exc))
                return await self._finish(record, PostState.FAILED, error=exc.user_message)
            except (PublishError, ConfigError) as exc:  # ConfigError: credentials, before any call
                # e.g. an access level or missing credentials: nothing is paused; once a
                # person fixed it, the command below tries again
                message = (
                    f"{exc.user_message} Once that is fixed,"
                    f" `python -m pipeline publish {record.run_id}` tries again."
                )
                record = await self._attempt(record, "failed", message, str(exc))
                return await self._finish(record, PostState.FAILED, error=message)
            except Exception:
                # An unknown failure during the remote call: it may have posted. Never guess.
                log.exception("run %s: %s post failed oddly", record.run_id, record.platform)
                record = await self._attempt(record, "error", "unexpected error", "")
                return await self._settle(record, caption)
            now = self.clock()
            record = replace(
                record,
                state=PostState.POSTED,
                remote_id=remote.remote_id,
                url=remote.url,
                error=None,
                attempts=(*record.attempts, PostAttempt(now, "posted", remote.url or "")),
                updated_at=now,
            )
            await self.store.update_post(record)  # the remote id, written right after the post
            log.info("run %s: posted to %s: %s", record.run_id, record.platform, record.url)
            return record
        raise AssertionError("unreachable: the loop returns")

    async def _settle(self, record: PostRecord, caption: str) -> PostRecord:
        """A post that may be online: look for it; found -> POSTED, else UNCERTAIN (and tell)."""
        publisher = self.publishers.get(record.platform)
        found: RemotePost | None = None
        note = ""
        if record.remote_id:  # the id was saved: it is online
            found = RemotePost(record.remote_id, record.url)
        elif publisher is None:
            note = "no publisher to check with"
        else:
            try:
                found = await publisher.find_post(record.account, caption, record.created_at)
            except AccountAttentionError as exc:  # e.g. the login to look was refused
                note = f"could not check: {exc.user_message}"
                await self._pause(record.platform, record.account, exc.reason)
            except PublishError as exc:
                note = f"could not check: {exc.user_message}"
            except Exception:
                log.exception("run %s: checking %s failed", record.run_id, record.platform)
                note = "could not check the account's posts"
        if found is not None:
            record = replace(record, remote_id=found.remote_id, url=found.url, error=None)
            record = await self._attempt(record, "found", found.url or found.remote_id, "")
            return await self._finish(record, PostState.POSTED)
        message = (
            f"may or may not be online: look at the {record.account} account on"
            f" {_NAMES[record.platform]}; it is not posted again by itself"
            + (f" ({note})" if note else "")
        )
        record = await self._attempt(record, "uncertain", message, "")
        record = await self._finish(record, PostState.UNCERTAIN, error=message)
        log.warning("run %s: %s post is uncertain: %s", record.run_id, record.platform, note)
        if self.notifier is not None:
            await self.notifier.post_uncertain(record)
        return record

    async def _pause(self, platform: Platform, account: str, reason: str) -> None:
        """Pause the account (kept across restarts) and tell a person."""
        await asyncio.to_thread(self.attention.pause, platform, account, reason)
        if self.notifier is not None:
            await self.notifier.account_needs_attention(platform, account, reason)

    async def _attempt(
        self, record: PostRecord, outcome: str, message: str, detail: str
    ) -> PostRecord:
        """Add an attempt to the record and save it (the message is user-safe)."""
        if detail:
            log.info("run %s: %s %s: %s", record.run_id, record.platform, outcome, detail)
        now = self.clock()
        attempt = PostAttempt(now, outcome, scrub(message, limit=500))
        record = replace(record, attempts=(*record.attempts, attempt), updated_at=now)
        await self.store.update_post(record)
        return record

    async def _finish(
        self, record: PostRecord, state: PostState, *, error: str | None = None
    ) -> PostRecord:
        record = replace(record, state=state, error=error, updated_at=self.clock())
        await self.store.update_post(record)
        log.info("run %s: %s post %s %s", record.run_id, record.platform, state, record.url or "")
        return record
