"""A fresh Instagram login that Instagram hands over to its Bloks two-step flow, through the
real instagrapi (which follows the hand-over itself) against the fake at the wire."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.characters import Character
from pipeline.models import Platform, PostState
from pipeline.publish.credentials import session_path
from pipeline.publish.service import PublishService
from pipeline.settings import Settings
from tests.fakes.instagram import FakeInstagram, totp
from tests.publish.conftest import (
    IG_ENV,
    RecordingNotifier,
    approved_run,
    no_secrets,
    photo_run,
)

ENTRY = "com.bloks.www.two_step_verification.entrypoint"
PICKER = "com.bloks.www.two_step_verification.method_picker"
SELECT = "com.bloks.www.two_step_verification.method_picker.navigation.async"
VERIFY = "com.bloks.www.two_step_verification.verify_code.async"
CAA_LOGIN = "com.bloks.www.bloks.caa.login.async.send_login_request"
#: the Bloks two-step screens, in the order the app (and instagrapi) opens them
TWO_STEP = [ENTRY, PICKER, SELECT, VERIFY]
LOGIN = ("POST", "/api/v1/accounts/login/")
HANDOVERS = ["bloks", "invalid_parameters", "caa"]


def steps(fake: FakeInstagram) -> list[str]:
    """The Bloks two-step screens opened, in order (the CAA login's own steps left out)."""
    return [name for name, _ in fake.bloks if "two_step_verification" in name]


@pytest.mark.parametrize("flow", HANDOVERS)
async def test_a_login_handed_to_bloks_posts_and_keeps_the_session(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
    debug_logging: pytest.LogCaptureFixture,
    flow: str,
) -> None:
    """Handed to the Bloks two-step flow, the login sends the authenticator code there, the
    post goes out, and the session is saved (0600) and reused by the next process; the
    session Instagram embeds in the Bloks answer is in no log line, even at DEBUG."""
    fake_ig.login_flow = flow
    character = make_character(instagram=True)

    [record] = await service().publish_run(photo_run(run_dir), character, run_dir)

    assert record.state is PostState.POSTED
    assert len(fake_ig.medias) == 1
    assert steps(fake_ig) == TWO_STEP
    select = dict(fake_ig.bloks)[SELECT]
    assert select["client_input_params"]["selected_method"] == "totp"
    verify = dict(fake_ig.bloks)[VERIFY]
    assert verify["server_params"]["two_step_verification_context"] == fake_ig.bloks_context
    sent_at, code = fake_ig.codes[-1]
    assert verify["client_input_params"]["code"] == code
    secret = IG_ENV["FOX_IG_TOTP_SECRET"]
    assert code in {totp(secret, sent_at), totp(secret, sent_at - 30)}
    path = session_path(settings, Platform.INSTAGRAM, "fox_ig")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["authorization_data"]["sessionid"] == fake_ig.sessionid
    assert no_secrets(debug_logging.text)
    assert "freshSESSION" not in debug_logging.text  # the session id, quoted or not
    calls, logins = len(fake_ig.calls), len(fake_ig.logins)

    second = approved_run(run_dir, ["a.png"], run_id="second000001")
    [again] = await service().publish_run(second, character, run_dir)

    assert again.state is PostState.POSTED
    assert len(fake_ig.medias) == 2
    later = fake_ig.calls[calls:]
    assert ("GET", "/api/v1/accounts/current_user/") in later
    assert not [url for _, url in later if "login" in url or "bloks" in url]
    assert len(fake_ig.logins) == logins


def wrong_secret(fake: FakeInstagram) -> None:
    """The account's authenticator was reset: the configured secret's codes no longer work."""
    fake.totp_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def approval_only(fake: FakeInstagram) -> None:
    """The only second factor left is approving the login in the app on another device,
    which instagrapi's Bloks flow does not do (it picks the authenticator code anyway)."""
    fake.bloks_methods = ("approval",)


def challenge_at_verify(fake: FakeInstagram) -> None:
    """Instagram answers the code with a checkpoint (a challenge a person must pass)."""
    challenge = {"message": "challenge_required", "status": "fail",
                 "challenge": {"url": "https://i.instagram.com/challenge/4242/xyz/",
                               "api_path": "/challenge/4242/xyz/"}}  # fmt: skip
    fake.faults[VERIFY] = (400, {}, json.dumps(challenge))


def no_context(fake: FakeInstagram) -> None:
    """The hand-over leaves out the context the Bloks flow needs to go on."""
    fake.bloks_context = None


def unreadable_answer(fake: FakeInstagram) -> None:
    """The code is answered with a Bloks screen instagrapi cannot read (`layout` empty):
    instagrapi fails outside its own error tree."""
    fake.faults[VERIFY] = (200, {}, json.dumps({"layout": None, "status": "ok"}))


async def post_and_expect_a_pause(
    fake: FakeInstagram,
    service: PublishService,
    character: Character,
    run_dir: Path,
    notifier: RecordingNotifier,
    settings: Settings,
    logged: pytest.LogCaptureFixture,
    words: tuple[str, ...],
) -> None:
    """Post once: the account is paused and a person told, once, in one short line naming
    `words`; the password went to each login flow at most once, the two-step flow ran at
    most once, nothing was posted or saved, and no secret is in a log, record or message."""
    [record] = await service.publish_run(photo_run(run_dir), character, run_dir)

    assert record.state is PostState.FAILED
    assert [a.outcome for a in record.attempts] == ["posting", "account"]
    [(platform, account, reason)] = notifier.attention
    assert (platform, account) == (Platform.INSTAGRAM, "fox_ig")
    for word in words:
        assert word in reason.lower()
    assert "\n" not in reason
    assert len(reason) <= 320
    pause = json.loads((settings.attention_dir / "instagram-fox_ig.json").read_text())
    assert pause["reason"] == reason
    # accounts/login/ once and, when instagrapi moves on to the CAA login, that once too
    assert fake.calls.count(LOGIN) == 1
    assert [name for name, _ in fake.bloks].count(CAA_LOGIN) <= 1
    assert steps(fake) in ([], TWO_STEP)  # no second round of the two-step flow
    # one code at most, also sent to accounts/two_factor_login/ first when that refuses
    assert len(fake.codes) <= (2 if fake.login_flow == "invalid_parameters" else 1)
    assert not session_path(settings, Platform.INSTAGRAM, "fox_ig").exists()
    assert fake.medias == []
    codes = [code for _, code in fake.codes]
    texts = (logged.text, repr(record), reason, str(record.error))
    assert no_secrets(*texts)
    assert not any(code in text for code in codes for text in texts)
    assert not any(fake.sessionid in text for text in texts)


@pytest.mark.parametrize("flow", HANDOVERS)
@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (wrong_secret, ("two-factor", "instagram app", "resume the account")),
        (approval_only, ("two-factor", "another device", "resume the account")),
        (challenge_at_verify, ("challenge", "instagram app", "resume the account")),
    ],
    ids=["wrong-code", "approval-elsewhere", "challenge"],
)
async def test_a_bloks_login_only_a_person_can_finish_pauses_the_account(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
    settings: Settings,
    debug_logging: pytest.LogCaptureFixture,
    flow: str,
    setup: Callable[[FakeInstagram], None],
    words: tuple[str, ...],
) -> None:
    """A code the Bloks flow refuses, a challenge, or an approval wanted on another device
    pauses the account after one try, with a sentence saying what to do and no secret."""
    fake_ig.login_flow = flow
    setup(fake_ig)

    await post_and_expect_a_pause(
        fake_ig, service(), make_character(instagram=True), run_dir, notifier, settings,
        debug_logging, words,
    )  # fmt: skip
    assert steps(fake_ig) == TWO_STEP


@pytest.mark.parametrize(
    ("flow", "setup", "words"),
    [
        ("invalid_parameters", no_context, ("two-factor", "resume the account")),
        # a bare bad_password, and the CAA login that instagrapi tries next offers no context
        ("caa", no_context, ("password",)),
        ("bloks", unreadable_answer, ("instagrapi", "resume the account")),
        ("caa", unreadable_answer, ("instagrapi", "resume the account")),
    ],
    ids=[
        "two-factor-no-context",
        "caa-no-context",
        "bloks-unreadable",
        "caa-unreadable",
    ],
)
async def test_a_hand_over_instagrapi_cannot_follow_pauses_the_account(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
    settings: Settings,
    debug_logging: pytest.LogCaptureFixture,
    flow: str,
    setup: Callable[[FakeInstagram], None],
    words: tuple[str, ...],
) -> None:
    """A hand-over without the context the Bloks flow needs, or a Bloks answer instagrapi
    cannot read, pauses the account like any refused login: no crash, no second login."""
    fake_ig.login_flow = flow
    setup(fake_ig)

    await post_and_expect_a_pause(
        fake_ig, service(), make_character(instagram=True), run_dir, notifier, settings,
        debug_logging, words,
    )  # fmt: skip
    assert "failed oddly" not in debug_logging.text
