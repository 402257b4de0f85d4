"""Post records in the store (both engines), credentials lookup and paused accounts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.characters import Character
from pipeline.models import Platform, PostRecord, PostState, utcnow
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.credentials import CredentialStore, check_credentials, session_path
from pipeline.publish.errors import scrub
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.publish.conftest import IG_ENV, SECRETS, X_ENV


def failed_record(run_id: str = "run000000001") -> PostRecord:
    now = utcnow()
    return PostRecord(
        run_id=run_id,
        platform=Platform.TWITTER,
        account="fox_x",
        state=PostState.FAILED,
        error="busy",
        created_at=now,
        updated_at=now,
    )


async def test_only_one_retry_of_a_failed_post_wins(store: SqlStore) -> None:
    """Two processes retrying the same failed post: exactly one may post it."""
    record = failed_record()
    assert await store.record_post(record)
    claim = replace(record, state=PostState.POSTING, error=None)

    results = await asyncio.gather(store.retry_post(claim), store.retry_post(claim))

    assert sorted(results) == [False, True]
    [saved] = await store.posts_for_run(record.run_id)
    assert saved.state is PostState.POSTING


async def test_a_posted_record_cannot_be_retried(store: SqlStore) -> None:
    """A post that went out is never claimed for another try."""
    record = replace(failed_record(), state=PostState.POSTED, remote_id="1")
    await store.record_post(record)

    assert not await store.retry_post(replace(record, state=PostState.POSTING))


async def test_posts_in_state_lists_what_needs_a_look(store: SqlStore) -> None:
    """Posting and uncertain records can be listed for recovery and for people to decide."""
    await store.record_post(replace(failed_record("run000000001"), state=PostState.POSTING))
    await store.record_post(replace(failed_record("run000000002"), state=PostState.UNCERTAIN))
    await store.record_post(failed_record("run000000003"))

    found = await store.posts_in_state([PostState.POSTING, PostState.UNCERTAIN])

    assert sorted(r.run_id for r in found) == ["run000000001", "run000000002"]


def test_credentials_come_from_environment_then_file(settings: Settings) -> None:
    """An account's keys are read from NAME_KEY variables, else from credentials/NAME.json."""
    settings.credentials_dir.mkdir(parents=True)
    (settings.credentials_dir / "fox_x.json").write_text(
        json.dumps({"api_key": "from-file", "api_secret": "s", "access_token": "t"})
    )
    creds = CredentialStore(settings, {"FOX_X_API_KEY": "from-env", "FOX_X_ACCESS_SECRET": "a"})

    x = creds.twitter("fox_x")

    assert x.api_key.get_secret_value() == "from-env"
    assert x.api_secret.get_secret_value() == "s"
    assert "from-env" not in repr(x)


def test_check_names_missing_variables_without_values(
    settings: Settings, make_character: Callable[..., Character]
) -> None:
    """`check` names each missing variable and never prints a secret."""
    character = make_character(instagram=True, twitter=True)
    env = {k: v for k, v in {**IG_ENV, **X_ENV}.items() if k != "FOX_X_ACCESS_SECRET"}

    problems = check_credentials(character, settings, environ=env)

    assert [str(p) for p in problems] == [
        "characters/fox.yaml:9: social_media.platforms.twitter.credentials: "
        "FOX_X_ACCESS_SECRET is not set (in the environment, .env or "
        f"{settings.credentials_dir / 'fox_x.json'})"
    ]
    assert not any(secret in str(problems) for secret in SECRETS)


def test_check_flags_an_unreadable_or_open_session_file(
    settings: Settings, make_character: Callable[..., Character]
) -> None:
    """A damaged or world-readable Instagram session file is reported by `check`."""
    path = session_path(settings, Platform.INSTAGRAM, "fox_ig")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    path.chmod(0o644)

    problems = check_credentials(make_character(instagram=True), settings, environ=IG_ENV)

    messages = " | ".join(p.message for p in problems)
    assert "not readable" in messages
    assert "chmod 600" in messages


def test_paused_account_stays_paused_until_resumed(tmp_path: Path) -> None:
    """A paused account is still paused after a restart, until a person resumes it."""
    AttentionBoard(tmp_path).pause(Platform.INSTAGRAM, "fox_ig", "ChallengeRequired")

    board = AttentionBoard(tmp_path)  # a new process
    pause = board.paused(Platform.INSTAGRAM, "fox_ig")

    assert pause is not None
    assert pause.reason == "ChallengeRequired"
    assert board.resume(Platform.INSTAGRAM, "fox_ig")
    assert board.paused(Platform.INSTAGRAM, "fox_ig") is None


def test_a_pause_whose_file_cannot_be_written_still_holds_in_this_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The attention folder cannot be written (a file is in its way): the pause still holds
    until this process stops, one error line names the folder and the reason, and nothing
    raises."""
    folder = tmp_path / "attention"
    folder.write_text("not a folder")
    board = AttentionBoard(folder)

    board.pause(Platform.INSTAGRAM, "fox_ig", "ChallengeRequired")

    pause = board.paused(Platform.INSTAGRAM, "fox_ig")
    assert pause is not None
    assert pause.reason == "ChallengeRequired"
    assert [p.account for p in board.all()] == ["fox_ig"]
    [said] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert said.getMessage() == (
        f"paused instagram account fox_ig: ChallengeRequired; but cannot write {folder} "
        "(a file of that name is in the way), so the pause holds only until this process stops"
    )
    assert said.exc_info is None
    assert board.resume(Platform.INSTAGRAM, "fox_ig")


def test_platform_messages_are_scrubbed() -> None:
    """Text from a platform shown to people carries no tokens, cookies or links."""
    text = scrub('bad oauth_token=abc sessionid: "123:xyz" see https://x.com/a?k=1 Bearer q')

    assert "abc" not in text
    assert "xyz" not in text
    assert "https" not in text
    assert "bad" in text
