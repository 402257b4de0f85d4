"""`python -m pipeline publish RUN_ID` and `python -m pipeline accounts`, as a user runs them.

Bad input runs as a subprocess; posting runs in-process through `pipeline.__main__.main`, so the
X fake (`responses`, at tweepy's requests boundary) answers the real TwitterPublisher.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.models import Platform, PostRecord, PostState, Run, RunState, utcnow
from pipeline.publish.attention import AttentionBoard
from pipeline.store import connect
from tests.cli import run as run_cli
from tests.fakes.x import FakeX
from tests.publish.conftest import X_ENV, approved_run, character_yaml, comfy_png, no_secrets

RUN_ID = "abc123def456"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with one character posting to X, its credentials in the environment."""
    root = tmp_path / "project"
    (root / "characters").mkdir(parents=True)
    (root / "wf.json").write_text("{}")
    (root / "characters" / "fox.yaml").write_text(character_yaml(twitter=True))
    monkeypatch.chdir(root)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in {**X_ENV, "PUBLISH_RETRIES": "0", "PUBLISH_BACKOFF_SECONDS": "0"}.items():
        monkeypatch.setenv(name, value)
    return root


def save(project: Path, run: Run, *posts: PostRecord) -> None:
    """Put a run (and its post records) in the project's SQLite store."""

    async def work() -> None:
        store = await connect("", sqlite_path=project / "data" / "mediaoverload.db")
        try:
            await store.save_run(run)
            for post in posts:
                await store.record_post(post)
        finally:
            await store.close()

    asyncio.run(work())


def load(project: Path) -> tuple[Run | None, list[PostRecord]]:
    async def work() -> tuple[Run | None, list[PostRecord]]:
        store = await connect("", sqlite_path=project / "data" / "mediaoverload.db")
        try:
            return await store.load_run(RUN_ID), await store.posts_for_run(RUN_ID)
        finally:
            await store.close()

    return asyncio.run(work())


def failed_run(project: Path) -> Run:
    """An approved run whose X post failed (X was down): what `publish RUN_ID` is for."""
    folder = project / "output" / "fox" / RUN_ID
    comfy_png(folder / "a.png", (640, 480), (200, 10, 10))
    run = approved_run(folder, ["a.png"], run_id=RUN_ID)
    run = run.advance(RunState.FAILED)
    now = utcnow()
    post = PostRecord(RUN_ID, Platform.TWITTER, "fox_x", PostState.FAILED, error="X was busy",
                      created_at=now, updated_at=now)  # fmt: skip
    save(project, run, post)
    return run


def test_publish_retries_a_failed_post_and_prints_its_link(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose X post failed is posted by `publish RUN_ID`, which prints the link."""
    failed_run(project)

    code = main(["publish", RUN_ID])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [
        "twitter: posted https://x.com/i/web/status/1790000000000000001",
        f"run {RUN_ID}: published",
    ]
    [tweet] = fake_x.tweets
    assert tweet["text"] == "Autumn walk #fox"
    run, [post] = load(project)
    assert run is not None
    assert run.state is RunState.PUBLISHED
    assert post.state is PostState.POSTED


def test_publish_twice_posts_once(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """Running `publish RUN_ID` again after it worked posts nothing more and still says 0."""
    failed_run(project)
    assert main(["publish", RUN_ID]) == 0

    code = main(["publish", RUN_ID])

    assert code == 0
    assert len(fake_x.tweets) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "twitter: posted https://x.com/i/web/status/1790000000000000001",
        f"run {RUN_ID}: published",
    ]


def test_publish_that_fails_again_exits_2_and_keeps_the_run_failed(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """When X is still down the command says so and exits 2; the run stays failed."""
    failed_run(project)
    fake_x.fail("initialize", (503, {}, '{"title": "Service Unavailable"}'))

    code = main(["publish", RUN_ID])

    out = capsys.readouterr().out.splitlines()
    assert code == 2
    assert out[0].startswith("twitter: failed The platform is busy")
    assert out[1] == f"run {RUN_ID}: failed"
    run, [post] = load(project)
    assert post.state is PostState.FAILED
    assert run is not None
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.message == "not posted: twitter (failed)"
    assert fake_x.tweets == []


def test_publish_leaves_an_uncertain_post_alone(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """A post a person must look at is not retried: exit 2 and the reason is printed."""
    run = failed_run(project)
    now = utcnow()
    uncertain = PostRecord(RUN_ID, Platform.TWITTER, "fox_x", PostState.UNCERTAIN,
                           error="may or may not be online: a person must look",
                           created_at=now, updated_at=now)  # fmt: skip

    async def overwrite() -> None:
        store = await connect("", sqlite_path=project / "data" / "mediaoverload.db")
        await store.update_post(uncertain)
        await store.close()

    asyncio.run(overwrite())

    code = main(["publish", run.id])

    assert code == 2
    assert capsys.readouterr().out.splitlines()[0] == (
        "twitter: uncertain may or may not be online: a person must look"
    )
    assert fake_x.calls == []


def test_a_401_pauses_and_accounts_lists_then_resumes_it(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """X refusing the keys pauses the account; `accounts` shows it; `resume` lets it post."""
    failed_run(project)
    fake_x.fail("initialize", (401, {}, '{"title": "Unauthorized", "status": 401}'))
    assert main(["publish", RUN_ID]) == 2
    capsys.readouterr()

    assert main(["accounts"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:2] == ["twitter", "fox_x"]
    assert "X refused the credentials (401)" in listed[0]
    assert listed[-1] == "1 paused account(s)"

    assert main(["accounts", "resume", "fox_x"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "resumed the twitter account fox_x"
    assert main(["accounts"]) == 0
    assert capsys.readouterr().out.splitlines() == ["0 paused account(s)"]

    assert main(["publish", RUN_ID]) == 0
    assert len(fake_x.tweets) == 1
    assert no_secrets(capsys.readouterr().out)


def test_resuming_an_account_that_is_not_paused_is_bad_input(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`accounts resume` of a name that is not paused says so and exits 1."""
    AttentionBoard(project / "data" / "attention").pause(Platform.TWITTER, "fox_x", "401")

    code = main(["accounts", "resume", "fox_x", "--platform", "instagram"])

    assert code == 1
    assert capsys.readouterr().err.strip() == "fox_x is not paused"
    assert AttentionBoard(project / "data" / "attention").paused(Platform.TWITTER, "fox_x")


def test_publish_of_an_unknown_run_is_bad_input(project: Path) -> None:
    """`publish` of a run id that does not exist exits 1 with one line."""
    result = run_cli(["-m", "pipeline", "publish", "nope00000000"], project)

    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == "no run with id nope00000000"


def test_publish_of_a_run_not_approved_is_bad_input(project: Path) -> None:
    """A run still awaiting review cannot be published from the terminal: exit 1."""
    folder = project / "output" / "fox" / RUN_ID
    pending = approved_run(folder, ["a.png"], run_id=RUN_ID)
    save(project, replace(pending, decision=None, state=RunState.AWAITING_REVIEW))

    result = run_cli(["-m", "pipeline", "publish", RUN_ID], project)

    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"run {RUN_ID} is awaiting_review, not approved: only an approved run can be published"
    )


def test_publish_to_a_platform_the_character_does_not_use_is_bad_input(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--platform instagram` for a character that only posts to X exits 1 and says why."""
    failed_run(project)

    code = main(["publish", RUN_ID, "--platform", "instagram"])

    assert code == 1
    assert capsys.readouterr().err.strip() == "instagram is not enabled for fox"
    assert fake_x.calls == []
