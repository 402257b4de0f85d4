"""Benchmark: does the server go from one job to the next without waiting for us?

Runs N jobs of a fixed duration on the fake ComfyUI through ComfyPool, all submitted at once, and
prints the server's idle time between consecutive jobs (goal: median under 5 ms) and the total
time against N x duration (goal: within 2%). Imports comfy and tests.fakes only.

    python benchmarks/comfy_pipelining.py [--jobs 20] [--seconds 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from comfy import ComfyPool, Workflow  # noqa: E402  (needs the path set above)
from tests.fakes.comfyui import FakeComfyUI  # noqa: E402


async def bench(jobs: int, seconds: float) -> tuple[float, float]:
    template = Workflow.load(ROOT / "workflows" / "text2img.json")
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            FakeComfyUI(job_seconds=seconds, steps=10) as fake,
            ComfyPool([fake.url]) as pool,
        ):
            await pool.run(template.with_prompt("warm-up"), Path(tmp) / "warm")  # connect, cache
            fake.jobs.clear()
            began = time.perf_counter()
            submitted = await asyncio.gather(
                *(
                    pool.submit(template.with_prompt(f"job {i}"), Path(tmp) / str(i))
                    for i in range(jobs)
                )
            )
            results = await asyncio.gather(*(job.result() for job in submitted))
            total = time.perf_counter() - began
            assert all(len(files) == 1 for files in results)
            gaps = fake.idle_gaps()
            busy = [j.ended - j.started for j in fake.jobs if j.ended is not None]
            first_start = fake.jobs[0].started - began
            last_end = began + total - max(j.ended or 0.0 for j in fake.jobs)
    gap_ms = statistics.median(gaps) * 1000 if gaps else 0.0
    ratio = total / (jobs * seconds)
    print(f"jobs: {jobs} x {seconds * 1000:.0f} ms")
    worst = max(gaps, default=0) * 1000
    print(f"server idle between jobs: median {gap_ms:.2f} ms, max {worst:.2f} ms")
    print(f"first job started {first_start * 1000:.1f} ms after the first submit")
    print(f"last results downloaded {last_end * 1000:.1f} ms after the last job ended")
    print(f"server busy per job: median {statistics.median(busy) * 1000:.1f} ms")
    print(f"total {total:.3f} s against {jobs * seconds:.3f} s ideal")
    return gap_ms, ratio


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.25)
    args = parser.parse_args(argv)
    gap_ms, ratio = asyncio.run(bench(args.jobs, args.seconds))
    print(f"idle_gap_ms_median={gap_ms:.3f} total_ratio={ratio:.4f}")


if __name__ == "__main__":
    main()
