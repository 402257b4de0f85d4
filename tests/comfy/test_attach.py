"""Taking over a prompt another client queued (a process that died): the new client gets its
outputs without queueing it again, and queues again only what the server no longer has. And a
prompt whose queueing was cancelled half-way never stays behind on the server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from comfy import ComfyClient, ComfyPool, Queued, ServerSpec, Started, Workflow, new_prompt_id
from comfy.client import remote_files
from comfy.events import Event
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import dead_url


async def queue_and_abandon(fake: FakeComfyUI, workflows: list[Workflow]) -> list[str]:
    """Queue the workflows from a client that then goes away (its prompts stay queued)."""
    async with ComfyClient(fake.url) as gone:
        return [await gone.submit(w) for w in workflows]


async def test_a_finished_prompt_is_taken_from_the_history(
    fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A prompt that ended while nobody watched gives its files at once, run only once."""
    [prompt_id] = await queue_and_abandon(fake, [text2img.with_batch_size(2)])
    await fake.wait_idle()
    async with ComfyClient(fake.url) as client:
        assert await client.attach(prompt_id) is True
        outputs = await client.wait(prompt_id)
        files = await client.download(remote_files(outputs), out_dir)
    assert len(files) == 2
    assert [p.prompt_id for p in fake.prompts] == [prompt_id]
    assert [j.prompt_id for j in fake.jobs] == [prompt_id]


async def test_a_waiting_prompt_is_followed_to_its_end(
    fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A prompt still in the queue is watched by polling: its queue place, its start, its
    files, and no second copy is queued."""
    fake.job_seconds = 0.3
    first, second = await queue_and_abandon(fake, [text2img, text2img.with_prompt("b")])
    events: list[Event] = []
    async with ComfyPool([fake.url], poll_interval=0.05) as pool:
        job = await pool.attach(second, out_dir, server=fake.url, on_event=events.append)
        assert job is not None
        files = await job.result()
    assert len(files) == 1
    assert [p.prompt_id for p in fake.prompts] == [first, second]
    assert any(isinstance(e, Queued) and e.position == 1 for e in events)
    assert any(isinstance(e, Started) for e in events)


async def test_a_prompt_the_server_does_not_know_is_not_taken_over(
    fake: FakeComfyUI, out_dir: Path
) -> None:
    """An id the server never saw (or forgot) answers None: the caller queues the work."""
    async with ComfyPool([fake.url]) as pool:
        assert await pool.attach(new_prompt_id(), out_dir, server=fake.url) is None


async def test_an_interrupted_prompt_is_not_taken_over(
    fake: FakeComfyUI, client: ComfyClient, text2img: Workflow, out_dir: Path
) -> None:
    """A prompt that was interrupted ended without files: it is to be queued again."""
    fake.faults.stall_next = True
    prompt_id = await client.submit(text2img)
    await asyncio.sleep(0.1)
    await client.cancel(prompt_id)
    await fake.wait_idle()
    async with ComfyPool([fake.url]) as pool:
        assert await pool.attach(prompt_id, out_dir, server=fake.url) is None


async def test_the_pool_asks_every_server_when_the_noted_one_is_unknown(
    fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A prompt noted without its server (killed before the answer) is found on any server;
    a server that does not answer is passed over."""
    [prompt_id] = await queue_and_abandon(fake, [text2img])
    await fake.wait_idle()
    async with ComfyPool([ServerSpec.parse(dead_url()), ServerSpec.parse(fake.url)]) as pool:
        job = await pool.attach(prompt_id, out_dir)
        assert job is not None
        assert job.server == fake.url
        assert len(await job.result()) == 1


async def test_a_prompt_queued_with_a_chosen_id_keeps_it(
    fake: FakeComfyUI, client: ComfyClient, text2img: Workflow
) -> None:
    """The caller can choose the prompt id (to note it down before queueing)."""
    chosen = new_prompt_id()
    assert await client.submit(text2img, prompt_id=chosen) == chosen
    await client.wait(chosen)
    assert [p.prompt_id for p in fake.prompts] == [chosen]


async def test_a_submit_cancelled_while_its_post_is_on_the_way_takes_the_prompt_back(
    fake: FakeComfyUI, client: ComfyClient, text2img: Workflow
) -> None:
    """Cancelling a submit after the server accepted the prompt, before the answer arrived,
    still takes the prompt off the server: nothing runs for a caller that went away."""
    fake.job_seconds = 5
    await client.connect()
    submitting = asyncio.create_task(client.submit(text2img))
    while not fake.prompts:  # noqa: ASYNC110 - the fake offers no event for "received"
        await asyncio.sleep(0)
    submitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await submitting
    [sent] = fake.prompts
    assert sent.prompt_id in fake.deleted or sent.prompt_id in fake.interrupts
