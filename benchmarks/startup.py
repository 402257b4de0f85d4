"""Benchmark: how long do `python -m pipeline --help` and `python -m comfy --help` take to start,
against a bare interpreter (`python -c pass`)?

Runs each command `--runs` times in fresh processes, interleaved so that a busy moment of the
machine hits all three alike, and prints the medians of wall time and of CPU time, the ratios
to the bare start (goal: within 8x) and the costliest top-level imports of each command (one
more run with `-X importtime`). Bytecode is cached in a temporary folder and written by one
untimed start first, as an installed package has it; `--no-bytecode` measures starts that
compile every module (PYTHONDONTWRITEBYTECODE, as the container sets it). Imports nothing of
the project: it only starts processes.

    python benchmarks/startup.py [--runs 15] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS: dict[str, list[str]] = {
    "bare": ["-c", "pass"],
    "pipeline_help": ["-m", "pipeline", "--help"],
    "comfy_help": ["-m", "comfy", "--help"],
}

#: the top-level imports listed per command
SHOWN_IMPORTS = 6


@dataclass
class Timings:
    """Wall and CPU seconds (user + system, the child's own) of each start."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_once(args: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh interpreter running `args`; output is discarded."""
    cpu, began = _children_cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )
    return time.perf_counter() - began, _children_cpu() - cpu


def top_imports(args: Sequence[str], env: Mapping[str, str]) -> list[tuple[str, float]]:
    """The top-level imports of one start by cumulative time (ms), costliest first."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
        timeout=60,
    )
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        # "import time:       self [us] |  cumulative | imported package", nesting by indent
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        if name.startswith(" ") and not name.startswith("  "):
            found[name.strip()] = int(parts[1]) / 1000
    return sorted(found.items(), key=lambda pair: -pair[1])


def environment(bytecode: bool, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def bench(runs: int, *, bytecode: bool) -> tuple[dict[str, Timings], dict[str, list]]:
    timings = {name: Timings() for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as cache:
        env = environment(bytecode, Path(cache))
        for args in COMMANDS.values():
            start_once(args, env)  # writes the bytecode (and warms the file cache)
        for _ in range(runs):
            for name, args in COMMANDS.items():
                wall, cpu = start_once(args, env)
                timings[name].wall.append(wall)
                timings[name].cpu.append(cpu)
        imports = {name: top_imports(args, env) for name, args in COMMANDS.items()}
    return timings, imports


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="starts of each command (default 15)")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module on every start"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    timings, imports = bench(args.runs, bytecode=not args.no_bytecode)
    wall = {name: statistics.median(t.wall) for name, t in timings.items()}
    cpu = {name: statistics.median(t.cpu) for name, t in timings.items()}
    load = os.getloadavg()[0]
    print(
        f"{args.runs} start(s) each, bytecode {'cached' if not args.no_bytecode else 'off'}; "
        f"machine: {os.cpu_count()} cores, load average {load:.1f}"
    )
    for name in COMMANDS:
        ratio = wall[name] / wall["bare"]
        print(
            f"{name:<14} median {wall[name] * 1000:6.1f} ms wall ({ratio:4.1f}x bare), "
            f"{cpu[name] * 1000:6.1f} ms CPU ({cpu[name] / max(cpu['bare'], 1e-6):4.1f}x bare); "
            f"min {min(timings[name].wall) * 1000:.1f} ms"
        )
        shown = ", ".join(f"{module} {ms:.1f}" for module, ms in imports[name][:SHOWN_IMPORTS])
        print(f"  costliest imports (ms): {shown or 'none'}")
    figures = {
        "pipeline_help_ratio": wall["pipeline_help"] / wall["bare"],
        "comfy_help_ratio": wall["comfy_help"] / wall["bare"],
    }
    print(" ".join(f"{key}={value:.2f}" for key, value in figures.items()))
    return figures


if __name__ == "__main__":
    main()
