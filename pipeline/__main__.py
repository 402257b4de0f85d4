"""The command line: `python -m pipeline check | db | publish | accounts ...` and the runs.

A thin adapter like the bot: it builds settings, opens the store and prints. Exit codes:
0 done, 1 bad input (a file, an argument, a setting), 2 a service failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from comfy import ComfyError, Workflow
from pipeline import logs
from pipeline.cli_queue import COMMANDS as QUEUE_COMMANDS
from pipeline.cli_queue import add_queue_commands, cmd_queue
from pipeline.cli_stats import add_stats_commands
from pipeline.errors import (
    CharacterError,
    CharacterNotFound,
    MediaOverloadError,
    Problem,
    RunError,
    ServiceError,
    disk_exit_code,
    disk_reason,
)
from pipeline.failures import EXIT_BAD_INPUT, EXIT_OK, EXIT_SERVICE, exit_code, user_sentence
from pipeline.lease import Leases, RunLeased, this_process
from pipeline.models import (
    Job,
    Platform,
    PostRecord,
    PostState,
    Run,
    RunState,
    new_run_id,
    pruned_sentence,
    refuse_if_pruned,
)
from pipeline.news import catalog_problem, read_news
from pipeline.ports import ProgressSink, Store
from pipeline.store import open_store
from pipeline.workflows import check_workflow, node_line
from strategies import STRATEGY_NAMES

if TYPE_CHECKING:  # the modules that load pydantic, YAML, Pillow: imported by the commands
    from pipeline.characters import Character, Characters
    from pipeline.prompts.library import TemplateLibrary
    from pipeline.settings import Settings

#: `run` / `resume` stopped by SIGTERM; the run is left for `resume` (128 + SIGTERM, as a shell)
EXIT_STOPPED = 128 + signal.SIGTERM


def _library(settings: Settings) -> TemplateLibrary:
    from pipeline.prompts.library import TemplateLibrary

    return TemplateLibrary.load(settings.templates_dir)


def _characters(settings: Settings, folder: Path | None = None) -> Characters:
    """The character files (pydantic loads here, so that `--help` starts quickly)."""
    from pipeline.characters import Characters

    return Characters(settings.characters_dir if folder is None else folder, _library(settings))


def run_folder(character: Character, run_id: str) -> Path:
    """`pipeline.run.run_folder`, imported on use (it loads the strategies and Pillow)."""
    from pipeline.run import run_folder as folder_of_run

    return folder_of_run(character, run_id)


# ---------------------------------------------------------------------------- check


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """Validate every character file, its credentials and every workflow file, preflight the
    workflows on the ComfyUI servers that answer, and ask the language models; print each
    problem as file:line."""
    from pipeline.publish import check_credentials

    characters = _characters(settings)
    if not any(characters.folder.glob("*.y*ml")):
        folder = characters.folder.resolve()
        print(
            f"FAILED: no character files in {folder}: run check in the project folder (the one "
            "holding characters/), or set CHARACTERS_DIR"
        )
        return EXIT_BAD_INPUT
    loaded, problems = characters.load_all()
    for character in loaded:
        problems.extend(check_credentials(character, settings))
    workflows = sorted(settings.workflows_dir.glob("*.json"))
    usable: dict[str, Workflow] = {}
    texts: dict[str, str] = {}
    for path in workflows:
        found = check_workflow(path, root=characters.root)
        problems.extend(found)
        if not found:
            shown = _shown(path, characters.root)
            texts[shown] = path.read_text(encoding="utf-8")
            usable[shown] = Workflow.from_json(texts[shown], source=shown)
    server_problems, notes, checked = asyncio.run(_preflight(settings, usable, texts))
    problems.extend(server_problems)
    from pipeline.llm.doctor import check_models  # names, keys, pulled models, answers

    models = asyncio.run(check_models(settings))
    problems.extend(Problem("models", None, "", text) for text in models.problems)
    notes.extend(models.notes)
    for problem in problems:
        print(problem)
    for note in notes:
        print(f"note: {note}")
    status = "FAILED" if problems else "ok"
    print(
        f"{status}: {len(loaded)} character file(s) valid, {len(workflows)} workflow(s) read, "
        f"{checked} of {len(settings.comfyui_servers)} ComfyUI server(s) checked, "
        f"{len(problems)} problem(s)"
    )
    return EXIT_BAD_INPUT if problems else EXIT_OK


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


async def _preflight(
    settings: Settings, workflows: dict[str, Workflow], texts: dict[str, str]
) -> tuple[list[Problem], list[str], int]:
    """What each answering ComfyUI server lacks for each workflow (problems, at the line of
    their node in `texts`), which servers did not answer (notes: not a failure), and how many
    servers were checked."""
    from comfy import ServerSpec, preflight_servers

    problems: list[Problem] = []
    urls = []
    for text in settings.comfyui_servers:
        try:
            urls.append(ServerSpec.parse(text).url)
        except ValueError as exc:
            problems.append(Problem("settings", None, "COMFYUI_SERVERS", str(exc)))
    if not workflows or not urls:
        return problems, [], 0
    notes: list[str] = []
    checked = 0
    for report in await preflight_servers(
        urls,
        workflows,
        connect_timeout=5.0,
        object_info_max_bytes=int(settings.comfyui_object_info_max_mb * 2**20),
    ):
        if report.unreachable is not None:
            notes.append(
                f"ComfyUI at {report.url} did not answer ({report.unreachable}); "
                "the workflows were not checked against it"
            )
            continue
        checked += 1
        for name, found in report.problems.items():
            nodes = report.nodes.get(name) or [None] * len(found)
            problems.extend(
                Problem(
                    name,
                    node_line(texts.get(name, ""), node) if node is not None else None,
                    "",
                    f"ComfyUI at {report.url}: {text}",
                )
                for node, text in zip(nodes, found, strict=True)
            )
    return problems, notes, checked


# ---------------------------------------------------------------------------- new-character


def cmd_new_character(settings: Settings, args: argparse.Namespace) -> int:
    """Write characters/NAME.yaml from the commented example; it passes `check` as written."""
    from pipeline.characters import NAME_PATTERN, new_character_text

    name: str = args.name
    folder = settings.characters_dir
    if not NAME_PATTERN.match(name) or name == "example":
        print(
            f"{name[:64]!r} is not a usable character name: use letters, digits, '_' and '-' "
            "(up to 64, starting with a letter or digit), and not 'example'",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    example = folder / "example.yaml"
    try:
        text = example.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(
            f"cannot read the example {example} ({type(exc).__name__}): run this in the project "
            "folder (the one holding characters/), or set CHARACTERS_DIR",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    target = folder / f"{name}.yaml"
    characters = _characters(settings, folder)
    written = new_character_text(text, name)
    characters.parse(written, path=target)  # a CharacterError is printed, exit 1
    existing = [p for p in (target, folder / f"{name}.yml") if p.exists()]
    try:
        if existing:
            raise FileExistsError
        with target.open("x", encoding="utf-8") as out:
            out.write(written)
    except FileExistsError:
        shown = _shown(existing[0] if existing else target, characters.root)
        print(f"{shown} already exists: choose another name or edit that file", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"wrote {_shown(target, characters.root)} from the example: edit it, then run "
        "`python -m pipeline check`"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------- db


def _where(settings: Settings) -> str:
    url = settings.database_url.get_secret_value()
    if not url:
        return f"SQLite at {settings.database_path}"
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme} at {parts.hostname}:{parts.port or 3306}{parts.path}"  # no password


async def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    # arguments and files first: a bad one is refused before the database is opened
    if args.db_command == "add-character" and (wrong := catalog_problem(args)) is not None:
        print(wrong, file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.db_command == "import-news":
        items = await asyncio.to_thread(read_news, Path(args.file))
    url = settings.database_url.get_secret_value()
    async with open_store(url, sqlite_path=settings.database_path) as store:
        if args.db_command == "init":
            print(f"database ready: {_where(settings)}")
        elif args.db_command == "add-character":
            new_id = await store.add_character(
                args.name, args.group, weight=args.weight, status=0 if args.inactive else 1
            )
            print(f"added character {args.name!r} to group {args.group!r} (id {new_id})")
        elif args.db_command == "list-characters":
            rows = await store.list_characters(args.group)
            for row in rows:
                state = "active" if row.status == 1 else "inactive"
                print(f"{row.id:>5}  {row.group_name:<20} {row.name:<30} {row.weight:g}  {state}")
            print(f"{len(rows)} character(s)")
        elif args.db_command == "import-news":
            count = await store.add_news(items)
            print(f"imported {count} news item(s) from {args.file}")
    return EXIT_OK


# ---------------------------------------------------------------------------- runs


def _print_summary(run: Run, folder: Path | None, posts: Sequence[PostRecord]) -> None:
    print(f"\nrun {run.id}: {run.state.value}")
    if run.attempt > 1:
        print(f"  attempt {run.attempt} (rerolled {run.attempt - 1} time(s))")
    if run.action is not None:
        print(f"  in progress: {run.action.kind.value.replace('_', ' ')} asked by {run.action.by}")
    if run.failure is not None:
        print(f"  {run.failure.describe()}")
    if (pruned := pruned_sentence(run)) is not None:
        print(f"  pruned: {pruned}")
    for platform, due in run.queued.items():
        print(f"  {platform}: queued for {due.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    if run.choices is not None:
        c = run.choices
        print(
            f"  {c.generation_type}, {c.prompt_method} prompt, template {c.template}, "
            f"style {c.style or 'none'}, seed {c.seed}"
        )
    if run.prompt:
        print(f"  prompt: {run.prompt}")
    if run.sound_prompt:
        print(f"  sound: {run.sound_prompt}")
    if run.stage_pick is not None:
        pick = run.stage_pick
        if pick.chosen is None:
            print(f"  waiting for a pick of {len(pick.drafts)} draft(s) after {pick.stage}")
        else:
            chosen = ", ".join(f"#{i + 1}" for i in pick.chosen)
            print(f"  picked after {pick.stage}: {chosen} of {len(pick.drafts)} by {pick.by}")
    if folder is None and run.media:
        print("  media (its character file is gone, so its folder is unknown):")
    elif folder is not None and run.media:
        print(f"  media in {folder}:")
    elif folder is not None:
        print(f"  folder: {folder} (no media yet)")
    for number, item in enumerate(run.media, start=1):
        score = f"{item.score:.2f}" if item.score is not None else "  - "
        mark = "kept" if item.kept else "dropped"
        notes = [item.reason or ""]
        if run.attempt > 1:
            notes.insert(0, f"attempt {item.attempt}")
        if item.variation_of is not None:
            notes.insert(0, f"more like {item.variation_of + 1}")
        if item.upscaled_from is not None:
            notes.insert(0, f"upscaled from {item.upscaled_from}")
        note = ", ".join(n for n in notes if n)
        print(f"    {number:>2}. {score} {mark:<7} {item.path}  {note}".rstrip())
    for platform, caption in run.captions.items():
        indented = "\n      ".join(line for line in caption.splitlines() if line.strip())
        print(f"  caption [{platform}]: {indented}")
    for post in posts:
        print(
            f"  {post.platform.value}: {post.state.value} {post.url or post.error or ''}".rstrip()
        )


def _exit_code(run: Run) -> int:
    """A run's end as an exit code: done, a failure of bad input (or a review left for a
    terminal that is not there), or a service's failure."""
    if run.state in {RunState.PUBLISHED, RunState.REJECTED, RunState.APPROVED, RunState.QUEUED}:
        return EXIT_OK
    if run.state is RunState.AWAITING_REVIEW:
        return EXIT_BAD_INPUT
    if run.state is RunState.FAILED and run.failure is not None and run.failure.bad_input:
        return EXIT_BAD_INPUT
    return EXIT_SERVICE


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """`run` / `resume`: one run with a live progress line, then its summary.

    Everything that can be checked before work starts is checked first, each failure one line:
    the character (name, file, workflows: exit 1), a ComfyUI that answers and a language model
    for every step that answers (exit 2).
    """
    if args.command == "run":  # a bad name or file stops here, before any service is opened
        from pipeline.options import ImageLimits, check_options, inspect_image

        characters = _characters(settings)
        character = await asyncio.to_thread(characters.load, args.character)
        # refused before a run is created, so none fails on them
        options = check_options(
            character,
            generation_type=args.type,
            style=args.style,
            count=args.count,
            negative=args.negative,
            with_image=args.image is not None,
            max_count=settings.generate_max_count,
        )
        limits = ImageLimits.of(settings)
        if args.image is not None:
            image = Path(args.image)
            if not await asyncio.to_thread(image.is_file):
                raise RunError(f"There is no image file at {args.image}.")
            await asyncio.to_thread(inspect_image, image, limits)
    from pipeline.console import AutoReviewer, ConsoleReviewer, LogNotifier, TerminalProgress
    from pipeline.wiring import open_pipeline

    reviewer = AutoReviewer() if args.review == "auto" else ConsoleReviewer()
    async with open_pipeline(settings, reviewer=reviewer, notifier=LogNotifier()) as services:
        sink = TerminalProgress()
        if args.command == "run":
            needs_comfyui = needs_models = True
        else:
            stored = await services.store.load_run(args.run_id)
            if stored is None:
                raise RunError(f"no run with id {args.run_id}")
            held = await services.runner.held_elsewhere(stored.id)
            if held is not None:  # the bot (or another terminal) runs it right now
                raise RunLeased(held)
            refuse_if_pruned(stored)  # before ComfyUI is asked: nothing is left to resume
            character = await asyncio.to_thread(services.characters.load, stored.job.character)
            failed_at = stored.failure.state if stored.failure is not None else None
            needs_comfyui = stored.state in _BEFORE_MEDIA or (
                stored.state is RunState.FAILED and failed_at in _BEFORE_MEDIA
            )
            character.refuse_unrunnable_resume(stored)  # it would only fail the same way
            needs_models = _before(stored, _BEFORE_REVIEW)
        if needs_comfyui and not await services.pool.answering():
            servers = ", ".join(str(s) for s in services.pool.servers)
            raise ServiceError(
                f"no ComfyUI server answers ({servers})",
                user_message=f"no ComfyUI server answers at {servers}: start ComfyUI or set "
                "COMFYUI_SERVERS; nothing was started",
            )
        if needs_models and services.models is not None:  # as ComfyUI: never with no model
            from pipeline.llm.doctor import require_reachable

            await require_reachable(services.models)
        if args.command == "run":
            from pipeline.options import copy_image

            run_id = new_run_id()
            images: tuple[str, ...] = ()
            if args.image is not None:  # a copy in the run's folder: a resume needs no original
                copied = await asyncio.to_thread(
                    copy_image, Path(args.image), run_folder(character, run_id), limits
                )
                images = (str(copied),)
            job = Job(
                character=args.character,
                requested_by="cli",
                prompt=args.prompt,
                generation_type=options.generation_type,
                seed=args.seed,
                quick=args.quick,
                publish=not args.no_publish,
                input_images=images,
                style=options.style,
                count=options.count,
                negative=options.negative,
            )
            run = await services.runner.submit(job, sink=sink, run_id=run_id)
        else:
            run = await services.runner.resume(args.run_id, sink=sink)
        print(f"run {run.id} started for {run.job.character}", file=sys.stderr)
        final = await _wait_unless_sigterm(services.runner.wait(run.id))
        if final is None:  # leaving `open_pipeline` drains the runner; its prompts stay queued
            print(
                f"run {run.id}: stopped by SIGTERM; `python -m pipeline resume {run.id}` "
                "carries it on",
                file=sys.stderr,
            )
            return EXIT_STOPPED
        character = services.characters.load(final.job.character)
        posts = await services.store.posts_for_run(final.id)
        _print_summary(final, run_folder(character, final.id), posts)
        if final.state is RunState.AWAITING_REVIEW and args.review == "console":
            print(
                f"run {final.id} is left awaiting review: standard input ended before an "
                f"answer; `python -m pipeline resume {final.id} --review console` in a "
                "terminal, or `--review auto`, carries it on",
                file=sys.stderr,
            )
        return _exit_code(final)


async def _wait_unless_sigterm(waiting: Coroutine[Any, Any, Run]) -> Run | None:
    """The run as it ended, or None once SIGTERM arrives first (a second SIGTERM kills)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    ended = asyncio.ensure_future(waiting)
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({ended, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        stopper.cancel()
    if ended.done():
        return ended.result()
    ended.cancel()
    return None


#: states of a run whose media are not all made yet (resuming it needs ComfyUI)
_BEFORE_MEDIA = frozenset({RunState.CREATED, RunState.PROMPTED, RunState.DESCRIBED})
#: states of a run with a model step still ahead (resuming it needs a language model)
_BEFORE_REVIEW = _BEFORE_MEDIA | {RunState.GENERATED, RunState.SCORED, RunState.CAPTIONED}


def _before(run: Run, states: frozenset[RunState]) -> bool:
    """`run` is in one of `states`, or failed at one of them."""
    failed_at = run.failure.state if run.failure is not None else None
    return run.state in states or (run.state is RunState.FAILED and failed_at in states)


async def cmd_runs(settings: Settings, args: argparse.Namespace) -> int:
    url = settings.database_url.get_secret_value()
    async with open_store(url, sqlite_path=settings.database_path) as store:
        if args.command == "runs":
            states = {RunState(args.state)} if args.state else None
            runs = await store.list_runs(states=states, limit=args.limit)
            for run in runs:
                when = run.updated_at.strftime("%Y-%m-%d %H:%M")
                print(f"{run.id}  {when}  {run.state.value:<16} {run.character}")
            print(f"{len(runs)} run(s)")
            return EXIT_OK
        found = await store.load_run(args.run_id)
        if found is None:
            print(f"no run with id {args.run_id}", file=sys.stderr)
            return EXIT_BAD_INPUT
        run = found
        if args.command == "cancel":
            if run.state.finished:
                print(f"run {run.id} is already {run.state.value}", file=sys.stderr)
                return EXIT_BAD_INPUT
            return await _cancel(settings, store, run)
        posts = await store.posts_for_run(run.id)
        _print_summary(run, await _folder_of(settings, run), posts)
        return EXIT_OK


async def _folder_of(settings: Settings, run: Run) -> Path | None:
    """A run's media folder (relative to the project when inside it), None when its character
    file is gone or broken."""
    characters = _characters(settings)
    try:
        character = await asyncio.to_thread(characters.load, run.job.character)
    except (CharacterError, CharacterNotFound):
        return None
    return Path(_shown(run_folder(character, run.id), characters.root))


async def _cancel(settings: Settings, store: Store, run: Run) -> int:
    """Cancel a run no process is running, through `Runner.cancel` (under its lease, so none
    starts it meanwhile), taking its unfinished prompts off ComfyUI; a run another process
    runs is cancelled there."""
    from pipeline.wiring import build_runner, characters_from, prompt_withdrawer

    withdrawer = prompt_withdrawer(settings, characters_from(settings))

    async def withdraw(cancelled: Run) -> int:
        count = await withdrawer(cancelled)
        if count:
            print(f"took {count} unfinished prompt(s) off ComfyUI")
        return count

    runner = build_runner(settings, store, _starts_nothing, withdraw=withdraw)
    try:
        cancelled = await runner.cancel(run.id)
    except RunLeased as exc:
        print(f"{exc}: cancel it there (/cancel in Discord, or stop that process)", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"run {run.id} {cancelled.state.value}")
    return EXIT_OK


async def _starts_nothing(run: Run, sink: ProgressSink | None) -> Run:
    """The `execute` of the cancel command's Runner, which only cancels stopped runs."""
    raise AssertionError(f"the cancel command starts no run ({run.id})")


# ---------------------------------------------------------------------------- publish


async def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    """Publish an approved run again: failed posts are retried, posted and uncertain ones are
    left alone; prints each platform's outcome and link."""
    url = settings.database_url.get_secret_value()
    async with open_store(url, sqlite_path=settings.database_path) as store:
        run = await store.load_run(args.run_id)
        if run is None:
            print(f"no run with id {args.run_id}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if run.decision is None or not run.decision.approved or run.state is RunState.CANCELLED:
            print(
                f"run {run.id} is {run.state.value}, not approved: only an approved run can be "
                "published",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
        refuse_if_pruned(run)
        from pipeline.console import LogNotifier
        from pipeline.publish.stickers import unfinished
        from pipeline.wiring import publishing_for  # after the checks: it imports every client

        publishing = publishing_for(settings, store, notifier=LogNotifier(sys.stderr))
        character = publishing.characters.load(run.job.character)
        platforms = {Platform(args.platform)} if args.platform else None
        if run.stickers and platforms is None:  # a sticker pack's uploads to the guild
            if publishing.stickers is None:
                print(
                    f"run {run.id} is a sticker pack: set DISCORD_TOKEN and "
                    "DISCORD_STICKER_GUILD_ID to upload it",
                    file=sys.stderr,
                )
                return EXIT_BAD_INPUT
            run = await publishing.stickers.upload(run, run_folder(character, run.id))
            for sticker in run.stickers:
                print(
                    f"sticker {sticker.name}: {sticker.state.value} {sticker.error or ''}".rstrip()
                )
        records = await publishing.service.publish_run(
            run,
            character,
            run_folder(character, run.id),
            platforms=platforms,
            retry_failed=True,
        )
        final = await publishing.service.run_after_publishing(run, character)
        if final is not run:
            await store.save_run(final)
    for record in records:
        shown = (record.url or record.remote_id) if record.state is PostState.POSTED else None
        print(
            f"{record.platform.value}: {record.state.value} {shown or record.error or ''}".rstrip()
        )
    print(f"run {run.id}: {final.state.value}")
    posted = all(r.state is PostState.POSTED for r in records)
    return EXIT_OK if posted and not unfinished(final) else EXIT_SERVICE


async def cmd_queue_over_store(settings: Settings, args: argparse.Namespace) -> int:
    """`queue`, `publish-due`, `publish-now`, `unqueue` (`pipeline.cli_queue`) over the store."""
    url = settings.database_url.get_secret_value()
    async with open_store(url, sqlite_path=settings.database_path) as store:
        from pipeline.console import LogNotifier
        from pipeline.wiring import publishing_for  # imports every client: after the arguments

        queue = publishing_for(settings, store, notifier=LogNotifier(sys.stderr)).queue
        return await cmd_queue(queue, args)


# ---------------------------------------------------------------------------- prune


async def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Remove the media folders of failed, expired and cancelled runs older than
    MEDIA_RETENTION_DAYS; list each (run, character, state, age, size) and the total freed."""
    days = settings.media_retention_days
    if days <= 0:
        print("MEDIA_RETENTION_DAYS is 0: media are kept forever; nothing removed")
        return EXIT_OK
    from pipeline.retention import human_size, prune_media
    from pipeline.wiring import characters_from

    characters = characters_from(settings)
    url = settings.database_url.get_secret_value()
    async with open_store(url, sqlite_path=settings.database_path) as store:
        leases = Leases(store, this_process(), settings.run_lease_seconds)
        report = await prune_media(store, characters, leases, days=days, dry_run=args.dry_run)
    verb = "would remove" if report.dry_run else "removed"
    for item in report.pruned:
        where = _shown(item.folder, characters.root)
        print(
            f"{verb} {item.run_id}  {item.character:<20} {item.state.value:<10} "
            f"{item.age.days:>4} days  {human_size(item.size):>9}  {where}"
        )
    for skipped in report.skipped:
        print(f"left {skipped.run_id}: {skipped.reason}", file=sys.stderr)
    total, older = human_size(report.freed), f"older than {days:g} days"
    if report.dry_run:
        print(f"dry run: {len(report.pruned)} run folder(s) {older} would go, freeing {total}")
    else:
        print(f"{len(report.pruned)} run folder(s) {older} removed, {total} freed")
    return EXIT_OK


# ---------------------------------------------------------------------------- accounts


def cmd_accounts(settings: Settings, args: argparse.Namespace) -> int:
    """List paused accounts, or lift a pause after a person fixed the account."""
    from pipeline.publish import AttentionBoard

    board = AttentionBoard(settings.attention_dir)
    if args.accounts_command == "resume":
        platforms = [Platform(args.platform)] if args.platform else list(Platform)
        resumed = [p for p in platforms if board.resume(p, args.name)]
        if not resumed:
            print(f"{args.name} is not paused", file=sys.stderr)
            return EXIT_BAD_INPUT
        for platform in resumed:
            print(f"resumed the {platform.value} account {args.name}")
        print("publish its failed runs with: python -m pipeline publish RUN_ID")
        return EXIT_OK
    pauses = board.all()
    for pause in pauses:
        since = pause.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"{pause.platform.value:<10} {pause.account:<24} since {since}  {pause.reason}")
    print(f"{len(pauses)} paused account(s)")
    return EXIT_OK


# ---------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    """argparse with the README's exit code for a bad argument (1, not argparse's 2), said in
    one line; its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(
        prog="python -m pipeline", description="MediaOverload's pipeline without Discord."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate characters, credentials, workflows and ComfyUI nodes")
    new_character = sub.add_parser(
        "new-character", help="write characters/NAME.yaml from the commented example"
    )
    new_character.add_argument("name", help="the character's key: letters, digits, '_' and '-'")

    db = sub.add_parser("db", help="the database: init, characters, news")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("init", help="create or upgrade the schema")
    add = db_sub.add_parser("add-character", help="add a member of a character group")
    add.add_argument("name")
    add.add_argument("--group", required=True)
    add.add_argument("--weight", type=float, default=1.0)
    add.add_argument("--inactive", action="store_true")
    news = db_sub.add_parser("import-news", help="import news rows from a CSV or JSON file")
    news.add_argument("file")
    listing = db_sub.add_parser("list-characters", help="list character group members")
    listing.add_argument("--group")

    run = sub.add_parser("run", help="run the pipeline once for a character")
    run.add_argument("--character", required=True)
    run.add_argument("--prompt")
    run.add_argument("--type", choices=STRATEGY_NAMES)
    run.add_argument("--seed", type=int, help="replay a run: the same seed makes the same choices")
    run.add_argument(
        "--image", metavar="PATH", help="the input image of a type that starts from one"
    )
    run.add_argument("--count", type=int, metavar="N", help="images per description")
    run.add_argument("--negative", metavar="TEXT", help="the negative prompt")
    run.add_argument("--style", metavar="NAME", help="one of the character's style_weights")
    run.add_argument("--quick", action="store_true", help="skip vision scoring")
    run.add_argument("--review", choices=["console", "auto"], default="console")
    run.add_argument("--no-publish", action="store_true")
    resume = sub.add_parser("resume", help="resume a stopped, failed or expired run")
    resume.add_argument("run_id")
    resume.add_argument("--review", choices=["console", "auto"], default="console")
    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--state", choices=[s.value for s in RunState])
    runs.add_argument("--limit", type=int, default=30)
    show = sub.add_parser("show", help="show one run")
    show.add_argument("run_id")
    cancel = sub.add_parser("cancel", help="cancel a run that is not finished")
    cancel.add_argument("run_id")
    prune = sub.add_parser(
        "prune", help="remove the media of failed, expired and cancelled runs past the retention"
    )
    prune.add_argument("--dry-run", action="store_true", help="list what would go; remove nothing")
    add_publishing_commands(sub)
    add_queue_commands(sub)
    add_stats_commands(sub)
    return parser


def add_publishing_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`publish RUN_ID [--platform P]` and `accounts [resume NAME [--platform P]]`."""
    platforms = [p.value for p in Platform]
    publish = sub.add_parser("publish", help="publish an approved run again (failed posts)")
    publish.add_argument("run_id")
    publish.add_argument("--platform", choices=platforms, help="only this platform")
    accounts = sub.add_parser("accounts", help="paused accounts: list them, or resume one")
    accounts_sub = accounts.add_subparsers(dest="accounts_command")
    accounts_sub.add_parser("list", help="list paused accounts (the default)")
    resume = accounts_sub.add_parser("resume", help="un-pause an account a person has fixed")
    resume.add_argument("name", help="the credentials name, as in the character file")
    resume.add_argument("--platform", choices=platforms, help="only on this platform")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (1, said by _Parser.error)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # put back after: main() may run in-process
    try:
        from pipeline.settings import load_settings  # pydantic: after the arguments are read

        settings = load_settings()
        # LOG_LEVEL as set; unset, a terminal command shows warnings only (its own lines
        # say what happens; the bot, a long-running host, logs from INFO)
        logs.configure(
            settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
        )
        return _dispatch(settings, args)
    except (MediaOverloadError, ComfyError) as exc:
        print(user_sentence(exc), file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:
        if (reason := disk_reason(exc)) is not None:  # the disk's, not a network's
            print(f"cannot use {exc.filename or 'a file'}: {reason}", file=sys.stderr)
            return disk_exit_code(exc)
        print(f"cannot reach a service: {type(exc).__name__}", file=sys.stderr)
        return exit_code(exc)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "check":
        return cmd_check(settings, args)
    if args.command == "new-character":
        return cmd_new_character(settings, args)
    if args.command == "db":
        return asyncio.run(cmd_db(settings, args))
    if args.command in {"run", "resume"}:
        return asyncio.run(cmd_run(settings, args))
    if args.command in {"runs", "show", "cancel"}:
        return asyncio.run(cmd_runs(settings, args))
    if args.command == "publish":
        return asyncio.run(cmd_publish(settings, args))
    if args.command == "accounts":
        return cmd_accounts(settings, args)
    if args.command == "prune":
        return asyncio.run(cmd_prune(settings, args))
    if args.command in QUEUE_COMMANDS:
        return asyncio.run(cmd_queue_over_store(settings, args))
    if args.command in {"collect-metrics", "stats"}:
        from pipeline import cli_stats

        run = cli_stats.cmd_stats if args.command == "stats" else cli_stats.cmd_collect_metrics
        return asyncio.run(run(settings, args))
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
