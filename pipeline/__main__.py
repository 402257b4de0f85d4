"""The command line: `python -m pipeline check | db ...` (and the run commands).

A thin adapter like the bot: it builds settings, opens the store and prints. Exit codes:
0 done, 1 bad input (a file, an argument, a setting), 2 a service failed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pipeline.characters import Characters
from pipeline.errors import (
    CharacterError,
    CharacterNotFound,
    ConfigError,
    MediaOverloadError,
    Problem,
    RunError,
    ServiceError,
    StoreError,
)
from pipeline.models import Job, PostRecord, Run, RunState
from pipeline.ports import NewsItem
from pipeline.prompts.library import TemplateLibrary
from pipeline.run import run_folder
from pipeline.settings import Settings, load_settings
from pipeline.store import open_store
from pipeline.workflows import check_workflow
from strategies import STRATEGY_NAMES

EXIT_OK, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2


def _library(settings: Settings) -> TemplateLibrary:
    return TemplateLibrary.load(settings.templates_dir)


# ---------------------------------------------------------------------------- check


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """Validate every character file and workflow file; print each problem as file:line."""
    characters = Characters(settings.characters_dir, _library(settings))
    loaded, problems = characters.load_all()
    workflows = sorted(settings.workflows_dir.glob("*.json"))
    for path in workflows:
        problems.extend(check_workflow(path, root=characters.root))
    for problem in problems:
        print(problem)
    status = "FAILED" if problems else "ok"
    print(
        f"{status}: {len(loaded)} character file(s) valid, {len(workflows)} workflow(s) read, "
        f"{len(problems)} problem(s)"
    )
    return EXIT_BAD_INPUT if problems else EXIT_OK


# ---------------------------------------------------------------------------- db


def _where(settings: Settings) -> str:
    url = settings.database_url.get_secret_value()
    if not url:
        return f"SQLite at {settings.database_path}"
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme} at {parts.hostname}:{parts.port or 3306}{parts.path}"  # no password


async def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
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
            items = read_news(Path(args.file))
            count = await store.add_news(items)
            print(f"imported {count} news item(s) from {args.file}")
    return EXIT_OK


def _news_date(value: object, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    text = str(value).strip().replace("T", " ").removesuffix("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise CharacterError(
        [Problem(where, None, "publish_date", f"{value!r} is not a date like 2026-01-31 08:00")]
    )


def read_news(path: Path) -> list[NewsItem]:
    """News rows from a CSV (header: title, keyword, content, publish_date) or a JSON list."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CharacterError([Problem(shown, None, "", f"cannot read the file ({exc})")]) from None
    rows: list[tuple[int | None, dict[str, object]]]
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CharacterError(
                [Problem(shown, exc.lineno, "", f"invalid JSON: {exc.msg}")]
            ) from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise CharacterError([Problem(shown, 1, "", "must be a list of objects")])
        rows = [(None, row) for row in data]
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        rows = [(reader.line_num, dict(row)) for row in reader]
    else:
        raise CharacterError([Problem(shown, None, "", "news files must be .csv or .json")])
    items: list[NewsItem] = []
    problems: list[Problem] = []
    for index, (line, row) in enumerate(rows):
        where = f"{shown}:{line}" if line is not None else f"{shown}[{index}]"
        title = str(row.get("title") or "").strip()
        if not title:
            problems.append(
                Problem(shown, line, f"[{index}].title" if line is None else "title", "is required")
            )
            continue
        try:
            date = _news_date(row.get("publish_date"), where)
        except CharacterError as exc:
            problems.extend(
                Problem(shown, line, p.key if line else f"[{index}].publish_date", p.message)
                for p in exc.problems
            )
            continue
        items.append(
            NewsItem(
                id=0,
                title=title,
                keyword=str(row.get("keyword") or "").strip(),
                content=str(row.get("content") or "").strip(),
                publish_date=date,
            )
        )
    if problems:
        raise CharacterError(problems)
    return items


# ---------------------------------------------------------------------------- runs


def _print_summary(run: Run, folder: Path | None, posts: Sequence[PostRecord]) -> None:
    print(f"\nrun {run.id}: {run.state.value}")
    if run.failure is not None:
        print(f"  failed at {run.failure.step}: {run.failure.message}")
    if run.choices is not None:
        c = run.choices
        print(
            f"  {c.generation_type}, {c.prompt_method} prompt, template {c.template}, "
            f"style {c.style or 'none'}, seed {c.seed}"
        )
    if run.prompt:
        print(f"  prompt: {run.prompt}")
    if folder is not None and run.media:
        print(f"  media in {folder}:")
        for number, item in enumerate(run.media, start=1):
            score = f"{item.score:.2f}" if item.score is not None else "  - "
            mark = "kept" if item.kept else "dropped"
            print(f"    {number:>2}. {score} {mark:<7} {item.path}  {item.reason or ''}".rstrip())
    for platform, caption in run.captions.items():
        indented = "\n      ".join(line for line in caption.splitlines() if line.strip())
        print(f"  caption [{platform}]: {indented}")
    for post in posts:
        print(
            f"  {post.platform.value}: {post.state.value} {post.url or post.error or ''}".rstrip()
        )


def _exit_code(run: Run) -> int:
    if run.state in {RunState.PUBLISHED, RunState.REJECTED, RunState.APPROVED}:
        return EXIT_OK
    if run.state is RunState.FAILED and run.failure is not None and run.failure.step in {"created"}:
        return EXIT_BAD_INPUT
    return EXIT_SERVICE


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """`run` / `resume`: one run with a live progress line, then its summary.

    Everything that can be checked before work starts is checked first, each failure one line:
    the character (name, file, workflows: exit 1) and a ComfyUI that answers (exit 2).
    """
    if args.command == "run":  # a bad name or file stops here, before any service is opened
        characters = Characters(settings.characters_dir, _library(settings))
        await asyncio.to_thread(characters.load, args.character)
    from pipeline.console import AutoReviewer, ConsoleReviewer, LogNotifier, TerminalProgress
    from pipeline.wiring import open_pipeline

    reviewer = AutoReviewer() if args.review == "auto" else ConsoleReviewer()
    async with open_pipeline(settings, reviewer=reviewer, notifier=LogNotifier()) as services:
        sink = TerminalProgress()
        if args.command == "run":
            needs_comfyui = True
        else:
            stored = await services.store.load_run(args.run_id)
            if stored is None:
                raise RunError(f"no run with id {args.run_id}")
            await asyncio.to_thread(services.characters.load, stored.job.character)
            failed_at = stored.failure.step if stored.failure is not None else ""
            needs_comfyui = stored.state in _BEFORE_MEDIA or (
                stored.state is RunState.FAILED and failed_at in {s.value for s in _BEFORE_MEDIA}
            )
        if needs_comfyui and not await services.pool.answering():
            servers = ", ".join(str(s) for s in services.pool.servers)
            raise ServiceError(
                f"no ComfyUI server answers ({servers})",
                user_message=f"no ComfyUI server answers at {servers}: start ComfyUI or set "
                "COMFYUI_SERVERS; nothing was started",
            )
        if args.command == "run":
            job = Job(
                character=args.character,
                requested_by="cli",
                prompt=args.prompt,
                generation_type=args.type,
                seed=args.seed,
                quick=args.quick,
                publish=not args.no_publish,
            )
            run = await services.runner.submit(job, sink=sink)
        else:
            run = await services.runner.resume(args.run_id, sink=sink)
        print(f"run {run.id} started for {run.job.character}", file=sys.stderr)
        final = await services.runner.wait(run.id)
        character = services.characters.load(final.job.character)
        posts = await services.store.posts_for_run(final.id)
        _print_summary(final, run_folder(character, final.id), posts)
        return _exit_code(final)


#: states of a run whose media are not all made yet (resuming it needs ComfyUI)
_BEFORE_MEDIA = frozenset({RunState.CREATED, RunState.PROMPTED, RunState.DESCRIBED})


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
            run = run.advance(RunState.CANCELLED)
            await store.save_run(run)
            print(f"run {run.id} cancelled")
            return EXIT_OK
        posts = await store.posts_for_run(run.id)
        _print_summary(run, None, posts)
        return EXIT_OK


# ---------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description="MediaOverload's pipeline without Discord."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate every character and workflow file")

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
    run.add_argument("--seed", type=int)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "check":
            return cmd_check(settings, args)
        if args.command == "db":
            return asyncio.run(cmd_db(settings, args))
        if args.command in {"run", "resume"}:
            return asyncio.run(cmd_run(settings, args))
        if args.command in {"runs", "show", "cancel"}:
            return asyncio.run(cmd_runs(settings, args))
    except (ConfigError, CharacterError, CharacterNotFound, RunError) as exc:
        print(exc.user_message, file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreError as exc:
        print(exc.user_message, file=sys.stderr)
        return EXIT_SERVICE
    except MediaOverloadError as exc:
        print(exc.user_message, file=sys.stderr)
        return EXIT_SERVICE
    except OSError as exc:
        print(f"cannot reach a service: {type(exc).__name__}", file=sys.stderr)
        return EXIT_SERVICE
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
