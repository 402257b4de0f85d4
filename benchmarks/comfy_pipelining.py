"""Benchmark: our ComfyPool against the reference design, on a fake ComfyUI with real costs.

The reference design is a small sequential client (what ComfyUI's own websocket example does):
open a WebSocket, POST one prompt, wait on the WebSocket for `executing` with node null for its
prompt id, download its outputs with GET /view, then POST the next. Ours submits every job at
once (as the pipeline does, with a progress handler) and downloads while the server runs the
next. Both run N = 1, 8, 32 jobs, cold (a fresh process: no connection, nothing cached; its
start-up aside) and warm (after one job on the same client), against a fake ComfyUI in this
process with per-request latency, a 0.5 MB and a 5 MB /object_info, output files of a real
size and real message order. Each cell is the median of `--repeats` fresh processes (N = 1:
`--single-repeats`, since the designs differ there by a few ms), the designs taking turns (and
which goes first alternating); a speedup is the median of each round's ratio of the two.

Goals: ours at least 1.2x faster for N = 8 cold, never slower for N = 1; the first job starts
within 100 ms of the first submit cold and 30 ms warm. The last line gives the worst figure over
the node-list sizes. Imports comfy, aiohttp and (in the parent) tests.fakes only.

    python benchmarks/comfy_pipelining.py [--jobs 1 8 32] [--seconds 0.04] [--latency 0.004]
        [--object-info-mb 0.5 5] [--output-kb 1500] [--repeats 3] [--single-repeats 15]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from comfy import ComfyPool, Event, Workflow  # noqa: E402  (needs the path set above)

if TYPE_CHECKING:
    from tests.fakes.comfyui import FakeComfyUI

DESIGNS = ("reference", "ours")
MODES = ("cold", "warm")
MB = 2**20
#: every answer the reference client reads is bounded, as any client here must be
LIMIT = aiohttp.ClientTimeout(total=60)


# ---------------------------------------------------------------- the two clients


class Reference:
    """The reference design: one job at a time over a plain POST, its own WebSocket, /view."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client_id = uuid.uuid4().hex
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(timeout=LIMIT)
        self.ws = await self.session.ws_connect(
            f"{self.url}/ws", params={"clientId": self.client_id}, max_msg_size=64 * MB
        )

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()

    async def run(self, workflows: Sequence[Workflow], out_dir: Path) -> int:
        """Each workflow in turn: POST, wait for its end on the WebSocket, download. Files."""
        assert self.session is not None
        assert self.ws is not None
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        count = 0
        for workflow in workflows:
            body = {"prompt": workflow.to_dict(), "client_id": self.client_id}
            async with self.session.post(f"{self.url}/prompt", json=body) as resp:
                prompt_id = (await resp.json())["prompt_id"]
            files: list[dict[str, str]] = []
            async with asyncio.timeout(60):
                async for msg in self.ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue  # previews
                    message = json.loads(msg.data)
                    data = message.get("data") or {}
                    if data.get("prompt_id") != prompt_id:
                        continue
                    if message["type"] == "executed":
                        files += (data.get("output") or {}).get("images", [])
                    elif message["type"] == "executing" and data.get("node") is None:
                        break
            for file in files:
                params = {k: file[k] for k in ("filename", "subfolder", "type")}
                async with self.session.get(f"{self.url}/view", params=params) as resp:
                    data_bytes = await resp.read()
                await asyncio.to_thread((out_dir / f"{count}.png").write_bytes, data_bytes)
                count += 1
        return count


async def ours(pool: ComfyPool, workflows: Sequence[Workflow], out_dir: Path) -> int:
    """The pipeline's way: every job queued at once (with a progress handler), then results."""
    events: list[Event] = []
    jobs = await asyncio.gather(
        *(pool.submit(w, out_dir / str(i), on_event=events.append) for i, w in enumerate(workflows))
    )
    return sum(len(files) for files in await asyncio.gather(*(job.result() for job in jobs)))


def workflows(count: int, tag: str) -> list[Workflow]:
    """`count` jobs no server has cached (a fresh prompt each)."""
    template = Workflow.load(ROOT / "workflows" / "text2img.json")
    return [template.with_prompt(f"{tag} {uuid.uuid4().hex} {i}") for i in range(count)]


async def child(design: str, mode: str, jobs: int, url: str) -> dict[str, float]:
    """One measurement in this (fresh) process: perf_counter at the first submit and at the
    last file downloaded; warm measurements first run one job on the same client."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if design == "reference":
            began = time.perf_counter()
            reference = Reference(url)
            await reference.open()
            try:
                if mode == "warm":
                    await reference.run(workflows(1, "warm-up"), out / "warm")
                    began = time.perf_counter()
                files = await reference.run(workflows(jobs, design), out / "jobs")
                ended = time.perf_counter()
            finally:
                await reference.close()
        else:
            began = time.perf_counter()
            async with ComfyPool([url]) as pool:
                if mode == "warm":
                    await ours(pool, workflows(1, "warm-up"), out / "warm")
                    began = time.perf_counter()
                files = await ours(pool, workflows(jobs, design), out / "jobs")
                ended = time.perf_counter()
    assert files == jobs, f"{design} got {files} files for {jobs} jobs"
    return {"began": began, "ended": ended}


# ---------------------------------------------------------------- the measurement


@dataclass(frozen=True)
class Cell:
    """One measurement: seconds from the first submit to the last file, the first job's start
    after the first submit and the server's median idle time between jobs (ms)."""

    total: float
    first_start_ms: float
    idle_gap_ms: float


async def measure(fake: FakeComfyUI, argv: list[str]) -> Cell:
    """Run one child process, then read the server's job times for its window."""
    mark = len(fake.jobs)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        "--child",
        *argv,
        fake.url,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    async with asyncio.timeout(600):
        out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the {argv} measurement failed (exit {proc.returncode})")
    figures = json.loads(out.decode().strip().splitlines()[-1])
    began, ended = figures["began"], figures["ended"]
    # perf_counter is the system's monotonic clock: the server's times compare with the child's
    window = [j for j in fake.jobs[mark:] if j.started >= began]
    gaps = [(b.started - a.ended) * 1000 for a, b in itertools.pairwise(window) if a.ended]
    return Cell(
        total=ended - began,
        first_start_ms=(window[0].started - began) * 1000,
        idle_gap_ms=statistics.median(gaps) if gaps else 0.0,
    )


async def bench(args: argparse.Namespace) -> dict[str, float]:
    from tests.fakes.comfyui import FakeComfyUI  # the parent only: children stay light

    worst: dict[str, float] = {}
    for size_mb in args.object_info_mb:
        fake = FakeComfyUI(
            job_seconds=args.seconds,
            steps=10,
            request_latency=args.latency,
            object_info_bytes=int(size_mb * MB),
        )
        fake.faults.output_bytes = args.output_kb * 1024 or None
        runs: dict[tuple[str, str, int], list[Cell]] = {}
        async with fake:
            # the designs take turns, so that a busy moment of the machine hits both alike; N = 1
            # differs by a few ms between the designs, so it gets more rounds (they are short)
            for round_ in range(max(args.repeats, args.single_repeats)):
                for jobs in args.jobs:
                    if round_ >= (args.single_repeats if jobs == 1 else args.repeats):
                        continue
                    for mode in MODES:
                        # which design goes first alternates too
                        for design in DESIGNS[:: 1 if round_ % 2 == 0 else -1]:
                            cell = await measure(fake, [design, mode, str(jobs)])
                            runs.setdefault((design, mode, jobs), []).append(cell)
        cells = {
            key: Cell(
                total=statistics.median(r.total for r in found),
                first_start_ms=statistics.median(r.first_start_ms for r in found),
                idle_gap_ms=statistics.median(r.idle_gap_ms for r in found),
            )
            for key, found in runs.items()
        }
        # the speedup is the median of each round's ratio: the two runs of a round are next to
        # each other in time, so a busy stretch of the machine weighs on both
        speedups = {
            (mode, jobs): statistics.median(
                ref.total / our.total
                for ref, our in zip(
                    runs["reference", mode, jobs], runs["ours", mode, jobs], strict=True
                )
            )
            for mode in MODES
            for jobs in args.jobs
        }
        _print_table(size_mb, args, cells, speedups)
        for mode in MODES:
            for jobs in args.jobs:
                speedup = speedups[mode, jobs]
                key = f"speedup_n{jobs}_{mode}"
                worst[key] = min(worst.get(key, speedup), speedup)
            for design, prefix in (("ours", ""), ("reference", "ref_")):
                first = max(cells[design, mode, jobs].first_start_ms for jobs in args.jobs)
                key = f"{prefix}first_start_ms_{mode}"
                worst[key] = max(worst.get(key, first), first)
        gap = cells["ours", "warm", max(args.jobs)].idle_gap_ms
        worst["idle_gap_ms_median"] = max(worst.get("idle_gap_ms_median", gap), gap)
    return worst


def _print_table(
    size_mb: float,
    args: argparse.Namespace,
    cells: dict[tuple[str, str, int], Cell],
    speedups: dict[tuple[str, int], float],
) -> None:
    print(
        f"server: /object_info {size_mb:g} MB, {args.latency * 1000:g} ms a request, "
        f"jobs of {args.seconds * 1000:g} ms, outputs of {args.output_kb} KB; "
        f"median of {args.repeats} ({args.single_repeats} for N = 1), interleaved; speedup: "
        "the median of each round's ratio"
    )
    print(
        f"  {'N':>3} {'mode':<5} {'reference s':>12} {'ours s':>8} {'speedup':>8}"
        f" {'first start ms ref/ours':>24} {'idle gap ms ref/ours':>21}"
    )
    for jobs in args.jobs:
        for mode in MODES:
            ref, our = cells["reference", mode, jobs], cells["ours", mode, jobs]
            print(
                f"  {jobs:>3} {mode:<5} {ref.total:>12.3f} {our.total:>8.3f}"
                f" {speedups[mode, jobs]:>7.2f}x"
                f" {ref.first_start_ms:>15.1f} / {our.first_start_ms:<6.1f}"
                f" {ref.idle_gap_ms:>12.1f} / {our.idle_gap_ms:<6.1f}"
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=0.04, help="one job on the server")
    parser.add_argument("--latency", type=float, default=0.004, help="per request, seconds")
    parser.add_argument("--object-info-mb", type=float, nargs="+", default=[0.5, 5.0])
    parser.add_argument("--output-kb", type=int, default=1500, help="each output file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--single-repeats", type=int, default=15, help="rounds for N = 1 (median of them)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        design, mode, jobs, url = args.child
        print(json.dumps(asyncio.run(child(design, mode, int(jobs), url))))
        return
    figures = asyncio.run(bench(args))
    print(" ".join(f"{key}={value:.3f}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
