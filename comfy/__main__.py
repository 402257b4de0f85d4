"""`python -m comfy`: run one workflow on ComfyUI from a terminal, or show a server's state.

A thin adapter over ComfyPool and Workflow; imports only the standard library and comfy.
Exit codes: 0 done, 1 workflow refused (by us or the server), 2 the job failed: a node failed
while running, it finished without output files, or its outputs could not be downloaded or saved,
3 no server answers, 4 cancelled or timed out. A failed or interrupted run leaves no file of the
job in --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from comfy.errors import (
    Cancelled,
    ComfyError,
    ComfyOffline,
    ComfyTimeout,
    ExecutionFailed,
    PreflightFailed,
    PromptRejected,
    WorkflowError,
)
from comfy.events import Cached, Event, NodeRunning, Queued, Started, Step
from comfy.workflow import Workflow

log = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8188"
EXIT_REJECTED, EXIT_FAILED, EXIT_OFFLINE, EXIT_STOPPED = 1, 2, 3, 4


def default_servers() -> list[str]:
    """`COMFYUI_SERVERS` (comma separated), else the local default."""
    raw = os.environ.get("COMFYUI_SERVERS", "")
    return [s.strip() for s in raw.split(",") if s.strip()] or [DEFAULT_SERVER]


def parse_set(text: str) -> tuple[str, str, object]:
    """`TITLE_OR_ID.input=value` -> (node, input, value); the value is JSON if it parses."""
    target, eq, raw = text.partition("=")
    node, dot, name = target.rpartition(".")
    if not eq or not dot or not node or not name:
        raise argparse.ArgumentTypeError(f"--set wants TITLE_OR_ID.input=value, not {text!r}")
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return node, name, value


def _print_event(event: Event) -> None:
    if isinstance(event, Queued):
        text = f"queued (position {event.position})"
    elif isinstance(event, Started):
        text = "started"
    elif isinstance(event, Cached):
        text = f"cached: {len(event.nodes)} nodes"
    elif isinstance(event, NodeRunning):
        text = f"running {event.class_type} ({event.node_id})"
    elif isinstance(event, Step):
        text = f"  step {event.value}/{event.max} of node {event.node_id}"
    else:
        text = "done; downloading"
    print(text, file=sys.stderr, flush=True)


async def run_command(args: argparse.Namespace) -> int:
    import asyncio  # asyncio and aiohttp: loaded by the commands, not by --help

    from comfy.pool import ComfyPool

    workflow = Workflow.load(args.workflow)
    for node, name, value in args.set:
        workflow = workflow.set_input(node, name, value)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    workflow = workflow.with_random_seeds(random.Random(seed))
    print(f"seed {seed}: {workflow.seeds()}", file=sys.stderr)
    async with ComfyPool(args.server or default_servers(), probe_timeout=args.timeout) as pool:
        job = await pool.submit(workflow, Path(args.out), on_event=_print_event)
        print(f"prompt {job.prompt_id} on {job.server}", file=sys.stderr)
        try:
            files = await job.result()
        except asyncio.CancelledError:  # Ctrl-C: do not leave the job running on the GPU
            print("cancelling the prompt", file=sys.stderr)
            await job.cancel()
            raise
    if not files:
        print(
            f"prompt {job.prompt_id} finished without output files (only previews, or nothing "
            "saved); add a save node (SaveImage, or a video combine node that saves)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    for file in files:
        print(file.path)
    return 0


async def info_command(args: argparse.Namespace) -> int:
    from comfy.client import ComfyClient  # aiohttp: loaded by the commands that talk to a server

    code = 0
    for url in args.server or default_servers():
        async with ComfyClient(url.partition("#")[0], request_timeout=args.timeout) as client:
            try:
                stats = await client.system_stats()
                queue = await client.queue()
            except ComfyOffline as exc:
                print(f"{url}: {exc}")
                code = EXIT_OFFLINE
                continue
        print(
            f"{url}: ComfyUI {stats.comfyui_version} ({stats.os}, PyTorch {stats.pytorch_version})"
        )
        for device in stats.devices:
            free, total = device.vram_free / 2**30, device.vram_total / 2**30
            print(f"  {device.type} {device.name}: {free:.1f} of {total:.1f} GiB free")
        print(f"  queue: {len(queue.running)} running, {len(queue.pending)} pending")
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comfy", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one API-format workflow and save its outputs")
    run.add_argument("workflow", type=Path, help="an API-format workflow JSON file")
    run.add_argument("--server", action="append", help="ComfyUI URL (repeatable; #tags allowed)")
    run.add_argument(
        "--set",
        action="append",
        type=parse_set,
        default=[],
        metavar="TITLE_OR_ID.input=value",
        help="set a node input (value parsed as JSON when it can be)",
    )
    run.add_argument("--seed", type=int, help="seed for the random seeds (default: fresh)")
    run.add_argument("--out", required=True, type=Path, help="directory for the outputs")
    run.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a server")

    info = commands.add_parser("info", help="show a server's version, devices and queue")
    info.add_argument("--server", action="append", help="ComfyUI URL (repeatable)")
    info.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    command = run_command if args.command == "run" else info_command
    try:
        import asyncio

        return asyncio.run(command(args))
    except (PromptRejected, PreflightFailed) as exc:
        lines = exc.lines() if isinstance(exc, PromptRejected) else list(exc.problems)
        print("ComfyUI cannot run this workflow:", file=sys.stderr)
        for line in lines:
            print(line, file=sys.stderr)
        return EXIT_REJECTED
    except WorkflowError as exc:
        print(exc, file=sys.stderr)
        return EXIT_REJECTED
    except ExecutionFailed as exc:
        # an operator's tool: the server's own message is what they need to fix the workflow
        print(
            f"node {exc.node_type} ({exc.node_id}) failed: {exc.exception_message}", file=sys.stderr
        )
        return EXIT_FAILED
    except ComfyOffline as exc:
        print(exc, file=sys.stderr)
        return EXIT_OFFLINE
    except (Cancelled, ComfyTimeout) as exc:
        print(exc, file=sys.stderr)
        return EXIT_STOPPED
    except ComfyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
