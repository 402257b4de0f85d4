"""No secret leaks: a full run, and its failures, scanned for every secret value in its settings.

In-process: the real MediaBot against the fake Discord, the real Pipeline (ComfyUI pool, the
real Ollama / OpenRouter / Gemini clients against their fakes, vision, captions), publishing
through the real instagrapi and X clients against the `responses` fakes, the store on SQLite.
Each secret setting holds a distinctive value; the test collects every log record (DEBUG, every
library), every request body the fake Discord received, the runs and posts in the store and
every file written (except the Instagram session file, whose job is to hold a session), and
asserts that no secret value appears in any of them.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses

from bot.render import APPROVE, REJECT
from bot.services import Services
from pipeline.errors import MediaOverloadError
from pipeline.models import Platform, Run, RunState
from pipeline.publish.credentials import session_path
from pipeline.store import open_store
from tests.bot.world import DB_PASSWORD, OPENROUTER_KEY, SECRETS, World, running_bot
from tests.bot.world import world as world  # the fixture: every fake
from tests.fakes import discord as fd
from tests.fakes.instagram import TRANSPORT, FakeInstagram
from tests.fakes.x import FakeX
from tests.waiting import until


@pytest.fixture
def platforms() -> Iterator[tuple[FakeInstagram, FakeX]]:
    """Instagram and X, faked at the requests boundary their client libraries send through."""
    instagram, x = FakeInstagram(), FakeX()
    with (
        responses.RequestsMock(assert_all_requests_are_fired=False, target=TRANSPORT) as ig,
        responses.RequestsMock(assert_all_requests_are_fired=False) as xm,
    ):
        instagram.install(ig)
        x.install(xm)
        yield instagram, x


def leaks(where: str, text: str | bytes) -> list[tuple[str, str]]:
    """(where, which secret) for every secret value found in `text`."""
    blob = text if isinstance(text, bytes) else text.encode("utf-8", "backslashreplace")
    return [(where, name) for name, value in SECRETS.items() if value.encode() in blob]


def log_texts(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    formatter = logging.Formatter()
    texts = []
    for record in records:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + formatter.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + record.stack_info
        texts.append((f"log {record.name} {record.levelname}", text))
    return texts


async def wait_for_state(services: Services, run_id: str, states: set[RunState]) -> Run:
    async def reached() -> Run | None:
        run = await services.store.load_run(run_id)
        return run if run is not None and run.state in states else None

    run = await until(reached, within=20, what=f"run {run_id} to reach {states}")
    assert run is not None
    return run


async def new_run(services: Services, *, besides: set[str]) -> str:
    """The id of the first run in the store that is not one of `besides`."""

    async def fresh() -> list[str]:
        return [r.id for r in await services.store.list_runs(limit=10) if r.id not in besides]

    return (await until(fresh, within=20, what="the second /generate to start a run"))[0]


async def test_a_full_run_and_its_failures_leak_no_secret(
    world: World,
    platforms: tuple[FakeInstagram, FakeX],
    debug_logging: pytest.LogCaptureFixture,
) -> None:
    """Publish once (Instagram posts, X answers 401), with a provider that echoes the key it
    refused and a ComfyUI naming files `../../evil.png`, then a run whose every model is down,
    then a database that refuses its password: the media stay in the run folder, and no token,
    key, password or session value appears in a log record, a Discord message, an exception
    text, a run or post record, or a file."""
    instagram, x = platforms
    openrouter, gemini, _ = world.llms
    discord = world.discord
    # OpenAI's API quotes the key it refused in its 401; an OpenAI-compatible server may too
    openrouter.fail(401, message=f"Incorrect API key provided: {OPENROUTER_KEY}.")
    unauthorized = {"title": "Unauthorized", "type": "about:blank", "status": 401,
                    "detail": "Unauthorized"}  # fmt: skip
    x.fail("tweet", (401, {}, json.dumps(unauthorized)))
    # and a ComfyUI that names its outputs to climb out of the run folder
    world.comfy.faults.report_as = [("../../..", "../../evil.png"), ("/etc", "/etc/evil.png")]

    async with running_bot(world) as services:
        first = await discord.slash("generate", character="fox")
        [review] = await discord.until(
            lambda: [
                m for m in discord.channel_messages(fd.REVIEW_CHANNEL) if REJECT in m.reactions
            ],
            within=30,
            what="the review",
        )
        [run] = await services.store.list_runs(limit=5)
        await discord.react(review, APPROVE, fd.ALICE)
        published = await wait_for_state(services, run.id, {RunState.PUBLISHED, RunState.FAILED})
        openrouter.always_fail(401)
        gemini.always_fail(500)
        await discord.slash("generate", character="fox")
        # a run whose models are all down fails within milliseconds: found in the store, not
        # by sampling the runner while it is active
        second_id = await new_run(services, besides={run.id})
        failed = await wait_for_state(services, second_id, {RunState.FAILED})
        runs = await services.store.list_runs(limit=10)
        posts = [post for r in runs for post in await services.store.posts_for_run(r.id)]

    errors: list[tuple[str, str]] = []
    try:
        async with open_store(
            f"mysql://mediaoverload:{DB_PASSWORD}@127.0.0.1:9/mediaoverload",
            sqlite_path=world.settings.database_path,
        ):
            pass
    except MediaOverloadError as exc:
        errors.append(("database error", f"{exc}\n{exc.user_message}\n{exc!r}"))

    # the run went where the test says, so every path was taken
    assert instagram.medias, "Instagram got its post"
    assert ("POST", "/2/tweets") in x.calls, "X was asked, and refused"
    assert openrouter.requests, "the provider that echoes its key was asked"
    assert published.state in {RunState.PUBLISHED, RunState.FAILED}
    assert failed.state is RunState.FAILED
    assert errors, "the refused database password raised the project's error"
    assert first.original is not None

    run_folder = world.project / "output" / "fox" / run.id
    media = [(run_folder / item.path).resolve() for item in published.media]
    assert sorted(path.name for path in media) == ["evil-1.png", "evil.png"]
    assert all(path.is_relative_to(run_folder) for path in media)
    evil = set(world.project.parent.rglob("evil*"))
    assert evil, "the media were written"
    assert all(path.is_relative_to(run_folder) for path in evil), evil

    session_file = session_path(world.settings, Platform.INSTAGRAM, "fox_ig")
    assert leaks("session", session_file.read_bytes()), "the scan finds what is there"

    debug_from = {r.name for r in debug_logging.records if r.levelno == logging.DEBUG}
    assert {"discord.http", "httpcore.connection"} <= debug_from, "library DEBUG records too"

    found: list[tuple[str, str]] = []
    for where, text in log_texts(debug_logging.records):
        found += leaks(where, text)
    for request in discord.requests:
        found += leaks(f"discord {request.method} body", json.dumps(request.body, default=str))
    for message in discord.messages.values():
        for attachment in message.attachments:
            found += leaks(f"discord attachment {attachment.filename}", attachment.data)
    for where, text in errors:
        found += leaks(where, text)
    for r in runs:
        found += leaks(f"run {r.id}", repr(r))
        if r.failure is not None:
            found += leaks(f"run {r.id} failure", r.failure.message)
    for post in posts:
        found += leaks(f"post {post.platform.value}", repr(post))
    for path in sorted(world.project.rglob("*")):
        if path.is_file() and path != session_file:
            found += leaks(f"file {path.relative_to(world.project)}", path.read_bytes())
    assert sorted(set(found)) == [], "\n".join(map(str, sorted(set(found))))


@pytest.mark.parametrize("server", ["refusing", "absent"], ids=["wrong-password", "no-server"])
async def test_a_database_password_never_shows_in_the_error(
    server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A DATABASE_URL whose password the server refuses (or with no server there) fails with
    the project's error naming host and database, never the password."""
    if server == "refusing":
        from tests.conftest import _mysql_available

        if not _mysql_available():
            pytest.skip("MariaDB is not running here (CI starts it)")
        url = f"mysql://root:{DB_PASSWORD}@127.0.0.1:3306/mediaoverload"
    else:
        url = f"mysql://mediaoverload:{DB_PASSWORD}@127.0.0.1:9/mediaoverload"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MediaOverloadError) as caught:
        async with open_store(url, sqlite_path=tmp_path / "unused.db"):
            pass
    text = "".join(traceback.format_exception(caught.value))
    assert "cannot open the database at 127.0.0.1" in caught.value.user_message
    assert DB_PASSWORD not in text + caught.value.user_message
    assert all(DB_PASSWORD not in t for _, t in log_texts(caplog.records))
