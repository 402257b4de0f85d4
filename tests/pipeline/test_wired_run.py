"""Every strategy as the command line wires it: `open_pipeline` from settings, the real comfy
client against the fake ComfyUI, the real Ollama client against its fake, the store on SQLite
and MariaDB, and the real X publisher reaching the fake X over TLS — from job to post record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.console import AutoReviewer, LogNotifier
from pipeline.models import Job, Platform, PostState, RunState
from pipeline.settings import Settings
from pipeline.wiring import open_pipeline
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import HealthyModel
from tests.fakes.ollama import FakeOllama
from tests.fakes.x_api import FakeXApi
from tests.runs import CHARACTER, make_project

#: (strategy, what it posts): images for the picture strategies, one clip for the video ones
CASES = [
    ("text2img", ".jpg"),
    ("image2image", ".jpg"),
    ("text2image2image", ".jpg"),
    ("text2video", ".mp4"),
    ("text2image2video", ".mp4"),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = make_project(tmp_path / "project")
    only_x = CHARACTER.replace("KEEP", "1").replace(
        "instagram: {enabled: true, credentials: testy_ig}", "instagram: {enabled: false}"
    )
    (folder / "characters" / "testy.yaml").write_text(only_x)
    return folder


@pytest.fixture
async def x_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeXApi]:
    async with FakeXApi(tmp_path / "x") as x:
        for name, value in {**x.env, **x.credentials_env("testy_x")}.items():
            monkeypatch.setenv(name, value)
        yield x


def settings_for(project: Path, database_url: str, comfy: str, ollama: str) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=project / "data",
        characters_dir=project / "characters",
        workflows_dir=project / "workflows",
        database_url=database_url,
        comfyui_servers=[comfy],
        llm_chain=["ollama"],
        ollama_host=ollama,
    )


async def run_wired(project: Path, database_url: str, strategy: str) -> tuple[Job, list[str]]:
    """One run of `strategy` through the real wiring; returns the job and the posted files."""
    async with FakeComfyUI(job_seconds=0.02) as comfy, FakeOllama() as ollama:
        ollama.respond_with(HealthyModel())
        settings = settings_for(project, database_url, comfy.url, ollama.url)
        async with open_pipeline(settings, reviewer=AutoReviewer(), notifier=LogNotifier()) as s:
            job = Job("testy", requested_by="cli", generation_type=strategy, seed=5)
            run = await s.runner.submit(job)
            done = await s.runner.wait(run.id)
            posts = await s.store.posts_for_run(done.id)
        assert done.state is RunState.PUBLISHED, done.failure
        assert done.choices is not None
        assert done.choices.generation_type == strategy
        assert [(p.platform, p.state) for p in posts] == [(Platform.TWITTER, PostState.POSTED)]
        assert any(r.images for r in ollama.requests)  # the vision model scored them
        # text2video.json has an MMAudio sampler: the description model wrote it a sound prompt
        assert done.sound_prompt == (HealthyModel.sound if strategy == "text2video" else None)
        kept = [
            m.path
            for i, m in enumerate(done.media)
            if done.decision and i in done.decision.selected
        ]
        return job, kept


@pytest.mark.parametrize(("strategy", "posted"), CASES, ids=[c[0] for c in CASES])
async def test_every_strategy_runs_through_the_real_wiring_to_a_post(
    project: Path, x_api: FakeXApi, tmp_path: Path, strategy: str, posted: str
) -> None:
    """A run of each strategy, wired from settings as `python -m pipeline run` does, ends
    published with one tweet carrying its media."""
    _, kept = await run_wired(project, f"sqlite:///{tmp_path / 'runs.db'}", strategy)

    assert x_api.errors == []
    [tweet] = x_api.state.tweets
    assert tweet["text"].startswith("Testy found the first snow.")
    uploads = [x_api.state.uploads[m] for m in tweet["media"]["media_ids"]]
    kinds = {u["init"]["media_type"] for u in uploads}
    assert kinds == ({"video/mp4"} if posted == ".mp4" else {"image/jpeg"})
    assert len(uploads) == min(len(kept), 4 if posted == ".jpg" else 1)


@pytest.mark.parametrize("strategy", ["text2img", "text2image2video"])
async def test_the_wired_run_keeps_its_record_on_mariadb(
    project: Path, x_api: FakeXApi, mysql_url: str, strategy: str
) -> None:
    """The same run on MariaDB: published, one post record, one tweet."""
    await run_wired(project, mysql_url, strategy)
    assert len(x_api.state.tweets) == 1
