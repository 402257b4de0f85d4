"""What a user's ComfyUI server sees from us: one POST per submit once its node list is known,
the node list once per connection, queue reads only when the queue changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfy import ComfyClient, ComfyPool, PreflightFailed, PromptRejected, Queued, Workflow
from comfy.events import Event
from tests.fakes.comfyui import FakeComfyUI
from tests.waiting import until

UNKNOWN_CLASS = {
    "error": {
        "type": "invalid_prompt",
        "message": "Cannot execute because node KSampler does not exist.",
        "details": "Node ID '#3'",
        "extra_info": {},
    },
    "node_errors": {},
}


@pytest.fixture
async def second() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(job_seconds=0.05, steps=2) as server:
        yield server


def since(fake: FakeComfyUI, mark: int) -> list[tuple[str, str]]:
    """The requests the fake received after the first `mark` ones."""
    return fake.requests[mark:]


async def test_a_lone_server_sees_one_post_per_submit_from_a_cold_start(
    fake: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """A fresh pool on one server opens its WebSocket and then only posts prompts: no queue,
    health or node-list reads before the jobs start."""
    async with ComfyPool([fake.url]) as pool:
        jobs = [
            await pool.submit(text2img.with_prompt(f"p{i}"), tmp_path / str(i)) for i in range(3)
        ]
        assert fake.requests == [("GET", "/ws")] + [("POST", "/prompt")] * 3
        await asyncio.gather(*(job.result() for job in jobs))


async def test_once_node_lists_are_known_a_submit_is_one_post(
    fake: FakeComfyUI, second: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """With two servers to choose from, each node list is read once; after that every submit
    costs its server exactly one request, whatever the number of jobs."""
    async with ComfyPool([fake.url, second.url]) as pool:
        await pool.run(text2img.with_prompt("warm-up"), tmp_path / "warm")
        marks = {f.url: len(f.requests) for f in (fake, second)}
        jobs = [
            await pool.submit(text2img.with_prompt(f"p{i}"), tmp_path / str(i)) for i in range(6)
        ]
        sent = {f.url: since(f, marks[f.url]) for f in (fake, second)}
        await asyncio.gather(*(job.result() for job in jobs))
    assert sum(len(requests) for requests in sent.values()) == 6
    assert all(set(requests) == {("POST", "/prompt")} for requests in sent.values())
    assert fake.count("GET", "/object_info") == second.count("GET", "/object_info") == 1


async def test_the_node_list_is_read_again_after_a_reconnect(
    fake: FakeComfyUI, second: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """A server whose WebSocket dropped may have restarted with other nodes: its node list is
    read again (once), the other server's is not."""
    async with ComfyPool([fake.url, second.url]) as pool:
        await pool.run(text2img.with_prompt("before"), tmp_path / "a")
        await fake.drop_websockets()
        await until(lambda: fake.ws_connections == 2 and pool.client(fake.url).connected)
        for i in range(3):
            await pool.run(text2img.with_prompt(f"after {i}"), tmp_path / str(i))
    assert fake.count("GET", "/object_info") == 2
    assert second.count("GET", "/object_info") == 1


async def test_a_refused_node_class_reads_the_node_list_again(
    fake: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """When the server says it lacks a node class, the kept node list is read again once; the
    refusal still reaches the caller, and the next submit is one POST again."""
    async with ComfyPool([fake.url]) as pool:
        await pool.client(fake.url).object_info()
        fake.reject_next(UNKNOWN_CLASS)
        with pytest.raises(PromptRejected, match="KSampler does not exist"):
            await pool.submit(text2img, tmp_path / "a")
        assert fake.count("GET", "/object_info") == 2
        mark = len(fake.requests)
        job = await pool.submit(text2img.with_prompt("again"), tmp_path / "b")
        assert since(fake, mark) == [("POST", "/prompt")]
        await job.result()


async def test_a_client_keeps_the_node_list_while_connected(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow
) -> None:
    """Preflight checks against the kept node list: many checks, one read of it."""
    await client.connect()
    for _ in range(4):
        await client.preflight(text2img)
    assert fake.count("GET", "/object_info") == 1


async def test_places_of_our_own_prompts_need_no_queue_read(
    fake: FakeComfyUI, text2img: Workflow
) -> None:
    """With only our prompts on the server, each of eight queued at once hears its place, and
    the queue is never read: the places follow from the WebSocket's counts."""
    fake.job_seconds = 0.1
    places: dict[str, list[int]] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, Queued):
            places.setdefault(event.prompt_id, []).append(event.position)

    async with ComfyClient(fake.url) as client:
        await client.connect()
        ids = await asyncio.gather(
            *(client.submit(text2img.with_prompt(f"p{i}"), on_event=on_event) for i in range(8))
        )
        await asyncio.gather(*(client.wait(pid) for pid in ids))
    order = [p.prompt_id for p in fake.prompts]
    first_heard = {pid: heard[0] for pid, heard in places.items()}
    assert first_heard | {order[0]: 0} == {pid: order.index(pid) for pid in order}
    assert all(heard == sorted(heard, reverse=True) for heard in places.values())
    assert fake.count("GET", "/queue") == 0


async def test_places_behind_another_clients_prompt_take_one_queue_read_per_change(
    fake: FakeComfyUI, text2img: Workflow
) -> None:
    """Behind a prompt of another client, eight jobs queued at once each hear their place; the
    queue is read at most once per change of it, and the other prompt's place is never ours."""
    fake.job_seconds = 1.0  # the other client's prompt runs through the whole test
    async with ComfyClient(fake.url) as other:
        await other.submit(text2img.with_prompt("someone else's"))
    fake.request_latency = 0.01
    places: dict[str, int] = {}
    heard: dict[str, int] = {}
    all_heard = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, Queued):
            places[event.prompt_id] = event.position
            if len(places) == 8 and not all_heard.is_set():
                heard.update(places)
                all_heard.set()

    async with ComfyClient(fake.url) as client:
        await client.connect()
        await asyncio.gather(
            *(client.submit(text2img.with_prompt(f"p{i}"), on_event=on_event) for i in range(8))
        )
        async with asyncio.timeout(5):
            await all_heard.wait()
        reads = fake.count("GET", "/queue")
    order = [p.prompt_id for p in fake.prompts]
    assert heard == {pid: order.index(pid) for pid in order[1:]}
    assert 1 <= reads <= 8


async def test_jobs_without_a_progress_handler_never_read_the_queue(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow
) -> None:
    """Nobody asks for queue places, so the server's queue is never read, however many jobs."""
    first = await client.submit(text2img.with_prompt("one"))
    second = await client.submit(text2img.with_prompt("two"))
    await client.wait(first)
    await client.wait(second)
    assert fake.count("GET", "/queue") == 0


async def test_a_model_installed_since_the_node_list_was_read_is_found(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow
) -> None:
    """The kept node list is asked again before a workflow is refused, so a checkpoint
    installed a moment ago passes without a reconnect."""
    workflow = text2img.set_input("Load Checkpoint", "ckpt_name", "new.safetensors")
    with pytest.raises(PreflightFailed, match=r"'new\.safetensors' is not installed"):
        await client.preflight(workflow)
    fake.models["checkpoints"].append("new.safetensors")
    await client.preflight(workflow)
    assert fake.count("GET", "/object_info") == 2


async def test_a_refusal_the_kept_node_list_does_not_explain_costs_no_read(
    fake: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """A refusal for another reason than a missing node class reaches the caller as the server
    worded it, and the kept node list is not read again for it."""
    async with ComfyPool([fake.url]) as pool:
        await pool.client(fake.url).object_info()
        fake.reject_next()
        with pytest.raises(PromptRejected, match="ckpt_name: value not in list"):
            await pool.submit(text2img, tmp_path / "a")
    assert fake.count("GET", "/object_info") == 1
