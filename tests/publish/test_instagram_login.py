"""A fresh Instagram login with TOTP two-factor through the real instagrapi, faked over HTTP."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from pipeline.characters import Character
from pipeline.models import Platform, PostRecord, PostState
from pipeline.publish.credentials import session_path
from pipeline.publish.service import PublishService
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.instagram import FakeInstagram, totp
from tests.publish.conftest import (
    IG_ENV,
    RecordingNotifier,
    approved_run,
    instagram_service,
    no_secrets,
    photo_run,
)

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

LOGIN = ("POST", "/api/v1/accounts/login/")
TWO_FACTOR = ("POST", "/api/v1/accounts/two_factor_login/")


async def test_first_post_logs_in_with_the_totp_code_of_the_secret(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """With no saved session the account logs in by password, then the authenticator code."""
    [record] = await service().publish_run(
        photo_run(run_dir), make_character(instagram=True), run_dir
    )

    assert record.state is PostState.POSTED
    [login] = fake_ig.logins
    assert login["username"] == "fox.official"
    assert str(login["enc_password"]).startswith("#PWD_INSTAGRAM:4:")  # decrypted by the fake
    [form] = fake_ig.two_factor_logins
    assert form["two_factor_identifier"] == "TWOfactorID42"
    assert form["verification_method"] == "3"  # an authenticator app (TOTP)
    [(sent_at, code)] = fake_ig.codes
    secret = IG_ENV["FOX_IG_TOTP_SECRET"]
    assert code in {totp(secret, sent_at), totp(secret, sent_at - 30)}  # computed just before
    assert fake_ig.calls.index(LOGIN) < fake_ig.calls.index(TWO_FACTOR)
    upload = next(i for i, (_, path) in enumerate(fake_ig.calls) if "rupload" in path)
    assert fake_ig.calls.index(TWO_FACTOR) < upload


async def test_the_new_session_is_saved_owner_only(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
) -> None:
    """After the login the session is in DATA_DIR/sessions, readable by this user only."""
    await service().publish_run(photo_run(run_dir), make_character(instagram=True), run_dir)

    path = session_path(settings, Platform.INSTAGRAM, "fox_ig")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["authorization_data"]["sessionid"] == fake_ig.sessionid
    assert "pw-SECRET-123" not in path.read_text()


async def test_the_next_process_reuses_the_session_without_a_login(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A later post, from a new process, checks the saved session once and logs in no more."""
    character = make_character(instagram=True)
    await service().publish_run(photo_run(run_dir), character, run_dir)
    calls = len(fake_ig.calls)

    second = approved_run(run_dir, ["a.png"], run_id="second000001")
    [record] = await service().publish_run(second, character, run_dir)

    assert record.state is PostState.POSTED
    later = fake_ig.calls[calls:]
    assert ("GET", "/api/v1/accounts/current_user/") in later
    assert LOGIN not in later
    assert TWO_FACTOR not in later
    assert len(fake_ig.logins) == 1


def wrong_secret(fake: FakeInstagram) -> None:
    """The account's authenticator was reset: the configured secret's codes no longer work."""
    fake.totp_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def challenge_at_login(fake: FakeInstagram) -> None:
    fake.faults["accounts/login/"] = (
        400,
        {},
        '{"message": "challenge_required", "challenge": {"url":'
        ' "https://i.instagram.com/challenge/4242/abc/", "api_path": "/challenge/4242/abc/"},'
        ' "status": "fail"}',
    )


@pytest.mark.parametrize(
    ("setup", "said", "codes_sent"),
    [(wrong_secret, "Please check the security code", 1), (challenge_at_login, "challenge", 0)],
    ids=["wrong-code", "challenge"],
)
async def test_a_refused_login_pauses_the_account_without_retrying(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    setup: Callable[[FakeInstagram], None],
    said: str,
    codes_sent: int,
) -> None:
    """A refused code or a challenge at login pauses the account and tells a person, once."""
    caplog.set_level(logging.INFO)
    setup(fake_ig)

    [record] = await service().publish_run(
        photo_run(run_dir), make_character(instagram=True), run_dir
    )

    assert record.state is PostState.FAILED
    assert [a.outcome for a in record.attempts] == ["posting", "account"]
    [(platform, account, reason)] = notifier.attention
    assert (platform, account) == (Platform.INSTAGRAM, "fox_ig")
    assert said.lower() in reason.lower()
    pause = json.loads((settings.attention_dir / "instagram-fox_ig.json").read_text())
    assert pause["reason"] == reason
    assert len(fake_ig.logins) == 1  # no retry loop
    assert len(fake_ig.two_factor_logins) == codes_sent
    assert not session_path(settings, Platform.INSTAGRAM, "fox_ig").exists()
    assert fake_ig.medias == []
    assert no_secrets(caplog.text, repr(record), reason)


async def test_a_paused_account_is_not_logged_in_again(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """After a refused login, a retry of the run fails at once without touching Instagram."""
    wrong_secret(fake_ig)
    character = make_character(instagram=True)
    run = photo_run(run_dir)
    await service().publish_run(run, character, run_dir)
    calls = len(fake_ig.calls)

    [record] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.FAILED
    assert "paused" in (record.error or "")
    assert len(fake_ig.calls) == calls


async def test_a_refused_login_while_checking_a_crashed_post_pauses_and_stays_uncertain(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    store: SqlStore,
    notifier: RecordingNotifier,
) -> None:
    """After a crash, a login refused while looking for the post pauses the account; the post
    stays 'uncertain' for a person and is not posted again."""
    character, run = make_character(instagram=True), photo_run(run_dir)
    await store.record_post(
        PostRecord(run.id, Platform.INSTAGRAM, "fox_ig", PostState.POSTING)  # a crash left it
    )
    wrong_secret(fake_ig)

    [record] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.UNCERTAIN
    assert "could not check" in (record.error or "")
    assert [(p, a) for p, a, _ in notifier.attention] == [(Platform.INSTAGRAM, "fox_ig")]
    assert [r.run_id for r in notifier.uncertain] == [run.id]
    assert fake_ig.configures == []


async def test_a_login_that_times_out_is_tried_again_not_paused(
    fake_ig: FakeInstagram,
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
    store: SqlStore,
    notifier: RecordingNotifier,
) -> None:
    """A login whose answer never comes (a timeout instagrapi passes on as it is) is a busy
    Instagram: the post is tried again and goes out; the account is not paused."""
    fake_ig.faults["accounts/login/"] = requests.ReadTimeout("read timed out")
    quick = settings.model_copy(update={"publish_retries": 1, "publish_backoff_seconds": 0})

    [record] = await instagram_service(quick, store, notifier).publish_run(
        photo_run(run_dir), make_character(instagram=True), run_dir
    )

    assert record.state is PostState.POSTED
    assert [a.outcome for a in record.attempts] == ["posting", "transient", "posted"]
    assert notifier.attention == []
    assert len(fake_ig.logins) == 2


async def test_a_sessions_folder_that_cannot_be_written_still_posts(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DATA_DIR/sessions cannot be written (here a file is in its way): the login still
    posts, and one warning names the folder and the reason, without a traceback."""
    sessions = session_path(settings, Platform.INSTAGRAM, "fox_ig").parent
    sessions.parent.mkdir(parents=True, exist_ok=True)
    sessions.write_text("not a folder")
    with caplog.at_level(logging.INFO):
        [record] = await service().publish_run(
            photo_run(run_dir), make_character(instagram=True), run_dir
        )
    assert record.state is PostState.POSTED
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert {r.getMessage() for r in warnings} == {  # after the login, and after the post
        f"instagram account fox_ig: cannot keep its session in {sessions} "
        "(a file of that name is in the way); the next start logs in again"
    }
    assert [r for r in warnings if r.exc_info] == []
