"""X against a hostile fake over real sockets: silence after the post, answers that trickle or
never end, the Free tier's 453; every call reaches the fake through X_API_URL alone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.characters import Character
from pipeline.models import Platform, PostState, Run
from pipeline.publish import build_publish_service
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.credentials import CredentialStore
from pipeline.publish.errors import TransientPublishError
from pipeline.publish.service import PublishService
from pipeline.publish.twitter import TwitterPublisher
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.x import ACCESS_453
from tests.fakes.x_api import FakeXApi
from tests.publish.conftest import X_ENV, RecordingNotifier, approved_run, comfy_png

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

#: the deadline of each X call in these tests, in seconds: small, so that silence ends fast
DEADLINE = 0.5


@pytest.fixture
async def x(tmp_path: Path) -> AsyncIterator[FakeXApi]:
    async with FakeXApi(tmp_path / "x") as fake:
        yield fake


def publisher_for(
    settings: Settings, x: FakeXApi, *, timeout: float = DEADLINE, max_answer_bytes: int = 1 << 20
) -> TwitterPublisher:
    """The real publisher pointed at the fake by X_API_URL only (no proxy, no patching)."""
    return TwitterPublisher(
        CredentialStore(settings, X_ENV).twitter,
        api_url=x.url,
        timeout=timeout,
        max_answer_bytes=max_answer_bytes,
        sleep=lambda _: None,
    )


@pytest.fixture
def service(
    settings: Settings, store: SqlStore, notifier: RecordingNotifier, x: FakeXApi
) -> Callable[..., PublishService]:
    async def no_wait(seconds: float) -> None:
        pass

    def build(**publisher_options: Any) -> PublishService:
        quick = settings.model_copy(update={"publish_retries": 1, "publish_backoff_seconds": 0})
        built = build_publish_service(
            quick,
            store,
            notifier=notifier,
            publishers={Platform.TWITTER: publisher_for(settings, x, **publisher_options)},
        )
        built.sleep = no_wait
        return built

    return build


def image_run(
    run_dir: Path, caption: str = "Autumn walk #fox", run_id: str = "abc123def456"
) -> Run:
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    return approved_run(run_dir, ["a.png"], captions={"twitter": caption}, run_id=run_id)


async def test_post_made_then_silence_is_found_on_the_timeline(
    x: FakeXApi,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """X makes the post and never answers: the run stops waiting at the deadline, finds the
    post on the account's timeline and is published once, with its link."""
    x.hold_answers("POST", "/2/tweets")

    [record] = await service().publish_run(
        image_run(run_dir), make_character(twitter=True), run_dir
    )

    assert record.state is PostState.POSTED
    [tweet] = x.state.tweets
    assert record.remote_id == tweet["id"]
    assert [a.outcome for a in record.attempts] == ["posting", "transient", "found"]
    assert "checked" in record.attempts[1].message
    assert x.held == [("POST", "/2/tweets")]
    # every call reached the fake through X_API_URL: tweepy's post and lookups included
    assert {("POST", "/2/tweets"), ("GET", "/2/users/me"), ("GET", "/2/users/42/tweets")} <= set(
        x.state.calls
    )
    assert x.errors == []


@pytest.mark.parametrize(
    "caption",
    [
        "Autumn walk, see example.com #fox",
        "Autumn walk https://fox.example.com/walk?day=1 #fox",
        "Autumn walk at http://example.org",
        "Fox & friends <3 #fox",
    ],
    ids=["bare-domain", "https-link", "http-link-at-the-end", "escaped-characters"],
)
async def test_a_post_is_recognised_as_x_shows_it(
    x: FakeXApi,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    caption: str,
) -> None:
    """After a lost answer, a post whose caption has links is still recognised on the
    timeline, where X shows every link as t.co and escapes &<>: it is posted, not uncertain."""
    x.hold_answers("POST", "/2/tweets")

    [record] = await service().publish_run(
        image_run(run_dir, caption), make_character(twitter=True), run_dir
    )

    assert record.state is PostState.POSTED
    [tweet] = x.state.tweets
    assert record.remote_id == tweet["id"]


async def test_free_tier_lookup_leaves_the_post_uncertain_and_pauses_nothing(
    x: FakeXApi,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
    settings: Settings,
) -> None:
    """On X's Free tier the timeline answers 453: a post whose answer was lost is left
    'uncertain' with what to do, the account is not paused, and the next run still posts."""
    x.state.free_tier = True
    x.hold_answers("POST", "/2/tweets")
    character = make_character(twitter=True)

    [record] = await service().publish_run(image_run(run_dir), character, run_dir)
    x.release()
    [later] = await service().publish_run(
        image_run(run_dir, "Winter walk #fox", run_id="second000000"), character, run_dir
    )

    assert record.state is PostState.UNCERTAIN
    assert record.error is not None
    assert "look at the fox_x account on X" in record.error
    assert "access" in record.error
    assert "Basic" in record.error
    assert [r.run_id for r in notifier.uncertain] == ["abc123def456"]
    assert notifier.attention == []
    assert AttentionBoard(settings.attention_dir).paused(Platform.TWITTER, "fox_x") is None
    assert later.state is PostState.POSTED
    assert len(x.state.tweets) == 2  # the first post once (never again), and the next run's


async def test_a_trickling_answer_ends_at_the_deadline(
    x: FakeXApi,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """An upload answer that trickles in a byte at a time is cut at the deadline and tried
    again; when it keeps trickling, the post fails saying how to try again later."""
    x.trickle("POST", "/2/media/upload/initialize")

    [record] = await service().publish_run(
        image_run(run_dir), make_character(twitter=True), run_dir
    )
    await x.until_cut_off()

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert "Gave up after 2 tries" in record.error
    assert "`python -m pipeline publish abc123def456` tries again" in record.error
    assert "will be retried" not in record.error
    assert [a.outcome for a in record.attempts] == ["posting", "transient", "transient"]
    assert "Trying again" in record.attempts[1].message
    assert x.state.tweets == []
    assert len(x.hostile) == 2


async def test_an_endless_timeline_is_cut_at_the_cap(x: FakeXApi, settings: Settings) -> None:
    """A timeline answer that never ends is read only up to the cap: the lookup fails as
    'cannot tell' (never 'not online') instead of filling memory or waiting forever."""
    x.flood("GET", "/2/users/42/tweets")
    publisher = publisher_for(settings, x, timeout=30, max_answer_bytes=256 * 1024)

    with pytest.raises(TransientPublishError, match="AnswerTooLarge"):
        await publisher.find_post("fox_x", "Autumn walk #fox", datetime.now(UTC) - timedelta(1))
    await x.until_cut_off()

    assert x.hostile == [("GET", "/2/users/42/tweets", "flood")]


async def test_rate_limit_longer_than_the_longest_wait_says_what_to_run(
    x: FakeXApi,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
) -> None:
    """A 429 asking for a wait beyond PUBLISH_MAX_WAIT_SECONDS fails the post and says that
    nothing retries it by itself and which command does, never 'will be retried'."""
    reset = str(int(datetime.now(UTC).timestamp()) + 86400)
    x.state.fail("tweet", (429, {"x-rate-limit-reset": reset}, '{"title": "Too Many Requests"}'))

    [record] = await service().publish_run(
        image_run(run_dir), make_character(twitter=True), run_dir
    )

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert "nothing retries it by itself" in record.error
    assert "PUBLISH_MAX_WAIT_SECONDS" in record.error
    assert "`python -m pipeline publish abc123def456` tries again" in record.error
    assert all("will be retried" not in a.message for a in record.attempts)
    assert x.state.tweets == []
    assert notifier.attention == []


def _error(status: int, message: str, **fields: object) -> tuple[int, dict[str, str], str]:
    return status, {}, json.dumps({"title": "Forbidden", "detail": message, **fields})


@pytest.mark.parametrize(
    ("answer", "paused", "said"),
    [
        (_error(401, "Unauthorized"), True, "X refused the credentials (401)"),
        (
            _error(
                400, "Bad request", errors=[{"code": 215, "message": "Bad Authentication data."}]
            ),
            True,
            "X refused the credentials",
        ),
        (ACCESS_453, False, "it needs the Basic access level or higher"),
        (
            _error(403, "a subset of endpoints (e.g. media post, oauth) only"),
            False,
            "The platform refused the post",
        ),
        (
            _error(
                403,
                "Read-only application cannot POST.",
                errors=[{"code": 261, "message": "Read-only application cannot POST."}],
            ),
            True,
            "Read and write",
        ),
        (
            _error(
                403,
                "You are not allowed to create a Tweet with duplicate content.",
                errors=[{"code": 187, "message": "Status is a duplicate."}],
            ),
            False,
            "duplicate",
        ),
    ],
    ids=[
        "401",
        "bad-auth-data",
        "453-access-level",
        "oauth-in-the-text",
        "read-only-app",
        "duplicate",
    ],
)
async def test_refusals_are_told_apart_by_code_and_meaning(
    x: FakeXApi,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
    answer: tuple[int, dict[str, str], str],
    paused: bool,
    said: str,
) -> None:
    """A refused login or an app without write permission pauses the account; X's access
    level (453), a duplicate, or a 403 that merely mentions 'oauth' fails the post alone."""
    x.state.fail("tweet", answer)

    [record] = await service().publish_run(
        image_run(run_dir), make_character(twitter=True), run_dir
    )

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert said in record.error
    assert bool(notifier.attention) is paused
    assert x.state.tweets == []
