"""`python -m pipeline queue | publish-due | publish-now RUN_ID | unqueue RUN_ID`, as a user (or
cron) runs them, in-process through `pipeline.__main__.main` against the X fake."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.models import Platform, Run, RunState, utcnow
from pipeline.store import connect
from tests.fakes.x import FakeX
from tests.publish.conftest import X_ENV, approved_run, character_yaml, comfy_png, no_secrets

RUN_ID = "abc123def456"
SLOTS = 'publish:\n  twitter:\n    times: ["09:00"]\n'


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with one character posting to X at 09:00 UTC, credentials in the environment."""
    root = tmp_path / "project"
    (root / "characters").mkdir(parents=True)
    (root / "wf.json").write_text("{}")
    (root / "characters" / "fox.yaml").write_text(character_yaml(twitter=True) + SLOTS)
    monkeypatch.chdir(root)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in {**X_ENV, "PUBLISH_RETRIES": "0", "PUBLISH_BACKOFF_SECONDS": "0"}.items():
        monkeypatch.setenv(name, value)
    return root


def _db(project: Path) -> Path:
    return project / "data" / "mediaoverload.db"


def queued_run(project: Path, *, due_in: timedelta = timedelta(minutes=-1)) -> Run:
    """An approved run whose X post waits in the queue, due `due_in` from now."""
    folder = project / "output" / "fox" / RUN_ID
    comfy_png(folder / "a.png", (640, 480), (200, 10, 10))
    due = utcnow() + due_in
    run = approved_run(folder, ["a.png"], run_id=RUN_ID)
    run = run.advance(RunState.QUEUED, queued={"twitter": due})

    async def work() -> None:
        store = await connect("", sqlite_path=_db(project))
        try:
            await store.save_run(run)
            await store.book_slot(RUN_ID, "fox", Platform.TWITTER, "fox_x", due, lambda _: due)
        finally:
            await store.close()

    asyncio.run(work())
    return run


def load(project: Path) -> Run | None:
    async def work() -> Run | None:
        store = await connect("", sqlite_path=_db(project))
        try:
            return await store.load_run(RUN_ID)
        finally:
            await store.close()

    return asyncio.run(work())


def test_queue_lists_what_goes_out_per_account(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`queue` shows each account and its posts' times."""
    run = queued_run(project, due_in=timedelta(hours=2))
    assert main(["queue"]) == 0
    out = capsys.readouterr().out.splitlines()
    due = run.queued["twitter"].strftime("%Y-%m-%d %H:%M UTC")
    assert out == ["twitter fox_x:", f"  {due}  run {RUN_ID}  fox", "1 post(s) queued"]


def test_publish_due_posts_what_is_due_once(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """cron's `publish-due` posts the due post and publishes the run; again, it posts nothing."""
    queued_run(project)
    assert main(["publish-due"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{RUN_ID} twitter: posted https://x.com/i/web/status/1790000000000000001",
        "1 due post(s) handled",
    ]
    run = load(project)
    assert run is not None
    assert run.state is RunState.PUBLISHED
    assert main(["publish-due"]) == 0
    assert capsys.readouterr().out.splitlines() == ["0 due post(s) handled"]
    assert len(fake_x.tweets) == 1


def test_publish_due_leaves_a_post_not_due_yet(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    queued_run(project, due_in=timedelta(hours=1))
    assert main(["publish-due"]) == 0
    assert fake_x.tweets == []


def test_publish_due_that_fails_exits_2(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """X down at the slot: exit 2, the run failed at publishing, nothing secret printed."""
    queued_run(project)
    fake_x.fail("initialize", (503, {}, '{"title": "Service Unavailable"}'))
    assert main(["publish-due"]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith(f"{RUN_ID} twitter: failed")
    assert no_secrets(captured.out, captured.err)
    run = load(project)
    assert run is not None
    assert run.state is RunState.FAILED


def test_unqueue_then_publish_now(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str]
) -> None:
    """`unqueue` keeps the post from going out and says how to bring it back; `publish-now`
    posts it at once."""
    queued_run(project)
    assert main(["unqueue", RUN_ID]) == 0
    assert "is off the publish queue" in capsys.readouterr().out
    assert main(["publish-due"]) == 0
    assert fake_x.tweets == []
    run = load(project)
    assert run is not None
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert "taken off the publish queue by the command line" in run.failure.message

    assert main(["publish-now", RUN_ID]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"run {RUN_ID}: published"
    assert len(fake_x.tweets) == 1


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["unqueue", "0123456789ab"], "no run with id '0123456789ab'"),
        (["publish-now", "nope"], "no run with id 'nope'"),
        (["unqueue", RUN_ID], f"run {RUN_ID} is published, not queued"),
    ],
    ids=["unqueue-unknown", "publish-now-unknown", "unqueue-published"],
)
def test_wrong_runs_are_bad_input(
    project: Path, fake_x: FakeX, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    """One sentence and exit 1, never a traceback."""
    queued_run(project)
    assert main(["publish-due"]) == 0
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert said in err
    assert "Traceback" not in err


def test_show_gives_the_time_of_each_waiting_post(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`show RUN_ID` of a queued run: its state and when each platform goes out."""
    run = queued_run(project, due_in=timedelta(hours=3))
    assert main(["show", RUN_ID]) == 0
    out = capsys.readouterr().out
    assert f"run {RUN_ID}: queued" in out
    assert f"twitter: queued for {run.queued['twitter']:%Y-%m-%d %H:%M} UTC" in out
