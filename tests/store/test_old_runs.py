"""Runs stored before schema 3 (odd facts in `extra`, a failure's state called `step`) still
read, on SQLite and on MariaDB, and the migration rewrites them in the current form."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipeline.models import (
    Job,
    PrunedMark,
    ReviewNotes,
    Run,
    RunFailure,
    RunState,
)
from pipeline.run import _reopen
from pipeline.store import SqlStore
from pipeline.store.schema import LATEST

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

#: a failed run with every key the old `Run.extra` held, as `Run.to_json` wrote it before
#: schema 3 (generated with that code, kept verbatim)
OLD_ROW = (
    '{"id":"01d5a0ed1234","job":{"character":"mascot","requested_by":"discord:42",'
    '"prompt":null,"generation_type":"image2image","prompt_method":null,"seed":7,"quick":false,'
    '"publish":true},"state":"failed","created_at":"2026-03-01T09:30:00Z",'
    '"updated_at":"2026-03-01T09:30:00Z","character":"mascot","choices":{"seed":7,'
    '"character":"mascot","generation_type":"image2image","prompt_method":"news","template":"t",'
    '"style":"s","workflows":{"main":"workflows/image2image.json"}},'
    '"prompt":"Pixel reads the news","descriptions":["a robot reading"],'
    '"media":[{"path":"main-i0/a.png","kind":"image","description_index":0,"stage":"final",'
    '"score":0.8,"reason":"ok","kept":true}],"captions":{},"ticket":{"channel_id":5,'
    '"message_ids":[77,78],"posted_at":"2026-03-01T09:30:00Z","deadline":null},'
    '"decision":null,"failure":{"step":"described","message":"ComfyUI failed","cause":"",'
    '"retryable":true,"bad_input":false},"extra":{"subject":"Luna","partner":"Sol",'
    '"news_id":"42","scoring":"1 of 1 images reached the threshold 0.6.",'
    '"review_notes":{"message_id":77,"captions":{"twitter":"New words"},"reminded":true},'
    '"media_pruned":{"at":"2026-03-01T09:30:00+00:00","after_days":30,"freed":2500},'
    '"input_images":["inputs/a.png"],"someone_elses":1}}'
)


def assert_read_in_full(run: Run | None) -> None:
    assert run is not None
    assert (run.subject, run.partner, run.news_id) == ("Luna", "Sol", 42)
    assert run.scoring_note == "1 of 1 images reached the threshold 0.6."
    assert run.review_notes == ReviewNotes(77, {"twitter": "New words"}, reminded=True)
    assert run.pruned == PrunedMark(at=AT, after_days=30, freed=2500)
    assert run.job.input_images == ("inputs/a.png",)
    assert run.failure == RunFailure(state=RunState.DESCRIBED, message="ComfyUI failed")
    assert run.failure.describe() == "failed at generate: ComfyUI failed"


async def insert_raw(store: SqlStore, text: str) -> None:
    await store.db.execute(
        "INSERT INTO runs (id, character_name, state, created_at, updated_at, data)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        ("01d5a0ed1234", "mascot", "failed", "2026-03-01T09:30:00", "2026-03-01T09:30:00", text),
    )


async def stored_text(store: SqlStore) -> str:
    rows = await store.db.fetchall("SELECT data FROM runs WHERE id = ?", ("01d5a0ed1234",))
    return str(rows[0][0])


async def test_a_run_an_old_version_wrote_loads_into_its_fields(store: SqlStore) -> None:
    """A run saved by the version before (or by an old process still running) loads whole:
    who is in it, the news item, the scoring, the review's notes, the prune, the failure."""
    await insert_raw(store, OLD_ROW)
    assert_read_in_full(await store.load_run("01d5a0ed1234"))
    assert [r.id for r in await store.list_runs(states={RunState.FAILED})] == ["01d5a0ed1234"]


async def test_the_migration_rewrites_old_runs_in_the_current_form(store: SqlStore) -> None:
    """Upgrading the database rewrites the stored run in the current form, losing nothing
    known; a second start leaves it as it is."""
    await insert_raw(store, OLD_ROW)
    await store.db.execute("DELETE FROM schema_version WHERE version >= 3")
    assert await store.migrate() == LATEST
    text = await stored_text(store)
    assert '"extra"' not in text
    assert '"step"' not in text
    assert_read_in_full(Run.from_json(text))
    assert await store.migrate() == LATEST
    assert await stored_text(store) == text


async def test_a_failed_old_run_resumes_at_the_step_it_failed_in(store: SqlStore) -> None:
    """`resume` of a run that failed before the rename goes back to generating its media."""
    await insert_raw(store, OLD_ROW)
    run = await store.load_run("01d5a0ed1234")
    assert run is not None
    assert _reopen(run).state is RunState.DESCRIBED


async def test_a_run_saved_now_loads_back_with_its_fields(store: SqlStore) -> None:
    """The typed fields survive a save and a load as they are."""
    run = Run.new(Job("mascot", input_images=("inputs/b.png",))).advance(
        RunState.SCORED,
        subject="Luna",
        partner="Sol",
        news_id=7,
        scoring_note="2 of 4 images reached the threshold 0.6.",
        review_notes=ReviewNotes(5, {"instagram": "Hi"}),
        pruned=PrunedMark(at=AT, after_days=1.5, freed=10),
    )
    await store.save_run(run)
    assert await store.load_run(run.id) == run


@pytest.mark.parametrize(
    ("extra", "field", "expected"),
    [
        ({"news_id": "not a number"}, "news_id", None),
        ({"review_notes": {"captions": {}}}, "review_notes", None),
        ({"media_pruned": {"at": "yesterday"}}, "pruned", None),
        ({"media_pruned": "2026-03-01"}, "pruned", None),
        ({"subject": 5}, "subject", None),
        ({"review_notes": {"message_id": 9, "captions": {"x": 1, "twitter": "ok"}}},
         "review_notes", ReviewNotes(9, {"twitter": "ok"})),
        ({"media_pruned": {"at": "2026-03-01T09:30:00+00:00"}}, "pruned", PrunedMark(AT, 0, 0)),
    ],
    ids=["news-id-text", "notes-without-message", "prune-without-time", "prune-not-a-dict",
         "subject-not-text", "caption-not-text", "prune-without-numbers"],
)  # fmt: skip
def test_a_malformed_old_fact_is_dropped_and_the_run_still_loads(
    extra: dict[str, object], field: str, expected: object
) -> None:
    """An old fact that cannot be read is left out (or read as far as it can be), never a
    run that cannot be opened."""
    data = json.loads(Run.new(Job("mascot")).to_json())
    data["extra"] = extra
    assert getattr(Run.from_json(json.dumps(data)), field) == expected


def test_a_failure_in_a_state_no_version_knows_reads_as_failed_and_is_not_resumed() -> None:
    """A hand-edited failure still opens: it reads as failed and `resume` leaves it there."""
    data = json.loads(OLD_ROW)
    data["failure"]["step"] = "generate"
    run = Run.from_json(json.dumps(data))
    assert run.failure is not None
    assert run.failure.state is RunState.FAILED
    assert _reopen(run) == run
