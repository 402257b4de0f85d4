"""Pure functions that turn runs, progress and reviews into Discord text and embeds.

No I/O and no state: every function takes what it shows and returns a string or an Embed within
Discord's limits (2,000 characters of content, 4,096 of an embed description). Imports the
domain and discord's Embed only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import discord

from bot.access import SCHEDULE_REQUESTER
from pipeline.models import (
    ActionKind,
    MediaItem,
    PostRecord,
    PostState,
    ReviewAction,
    Run,
    RunState,
    retry_changes_nothing,
)
from pipeline.ports import REVIEW_STEP, Progress
from pipeline.queued import QueuedPost

#: Discord's limits (https://discord.com/developers/docs/resources/message#create-message)
CONTENT_LIMIT = 2000
EMBED_DESCRIPTION_LIMIT = 4096
FILES_PER_MESSAGE = 10

APPROVE = "\N{WHITE HEAVY CHECK MARK}"
REJECT = "\N{CROSS MARK}"
#: a reviewer's actions besides a decision (pipeline.review_actions), offered as reactions on the
#: last review message: new media with new seeds, variations of the marked image, approve and
#: upscale the chosen
REROLL = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"
MORE_LIKE = "\N{HEAVY PLUS SIGN}"
UPSCALE = "\N{UPWARDS BLACK ARROW}\N{VARIATION SELECTOR-16}"
ACTION_EMOJI: dict[ActionKind, str] = {
    ActionKind.REROLL: REROLL,
    ActionKind.MORE_LIKE: MORE_LIKE,
    ActionKind.UPSCALE: UPSCALE,
}
#: 1..10 as keycap emoji; the n-th image of a review message carries NUMBERS[n - 1]
NUMBERS: tuple[str, ...] = (
    *(f"{digit}\N{VARIATION SELECTOR-16}\N{COMBINING ENCLOSING KEYCAP}" for digit in "123456789"),
    "\N{KEYCAP TEN}",
)

_STATE_WORDS: dict[RunState, str] = {
    RunState.CREATED: "starting",
    RunState.PROMPTED: "prompt written",
    RunState.DESCRIBED: "scene described",
    RunState.GENERATED: "media generated",
    RunState.SCORED: "media scored",
    RunState.CAPTIONED: "captions written",
    RunState.AWAITING_REVIEW: "waiting for review",
    RunState.APPROVED: "approved",
    RunState.REJECTED: "rejected",
    RunState.EXPIRED: "review expired",
    RunState.PUBLISHING: "publishing",
    RunState.QUEUED: "queued",
    RunState.PUBLISHED: "published",
    RunState.FAILED: "failed",
    RunState.CANCELLED: "cancelled",
}


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "\N{HORIZONTAL ELLIPSIS}"


def state_word(state: RunState) -> str:
    return _STATE_WORDS.get(state, state.value)


def progress_bar(value: int, maximum: int, *, width: int = 12) -> str:
    """`[██████░░░░░░] 6/12`: sampler steps as a bar of `width` cells."""
    maximum = max(maximum, 1)
    value = min(max(value, 0), maximum)
    filled = round(width * value / maximum)
    return f"`[{'█' * filled}{'░' * (width - filled)}]` {value}/{maximum}"


def duration(seconds: float) -> str:
    """`1h 02m`, `3m 05s`, `12s`."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class CardView:
    """Everything a run card shows at one moment."""

    run_id: str
    character: str
    generation_type: str | None
    #: 0 running, n waiting n-th in the bot's queue, None unknown
    position: int | None
    progress: Progress | None
    elapsed: float
    review_channel_id: int | None = None


def run_card(view: CardView) -> str:
    """The live run card: who, which step, queue place, sampler progress, time so far."""
    kind = f" · {view.generation_type}" if view.generation_type else ""
    lines = [f"**Run `{view.run_id}`** · {view.character}{kind}"]
    update = view.progress
    if view.position is not None and view.position > 0:
        lines.append(
            f"Queued: {ordinal(view.position)} in line (limits on parallel runs); "
            "it starts by itself."
        )
    elif update is None:
        lines.append("Step: starting")
    else:
        step = f"Step: {update.step}"
        if update.detail:
            step += f" · {update.detail}"
        lines.append(step)
        if update.queue_position is not None and update.queue_position > 0:
            lines.append(f"ComfyUI queue: {update.queue_position} ahead")
        if update.value is not None and update.maximum:
            lines.append(progress_bar(update.value, update.maximum))
        if update.step == REVIEW_STEP and view.review_channel_id:
            lines.append(f"Waiting for review in <#{view.review_channel_id}>")
    lines.append(f"Elapsed {duration(view.elapsed)}")
    return clip("\n".join(lines), CONTENT_LIMIT)


def outcome(run: Run, posts: Sequence[PostRecord] = (), *, elapsed: float | None = None) -> str:
    """The run card's last words: what became of the run, with the run id to refer to it."""
    head = f"**Run `{run.id}`** · {run.character}"
    state = run.state
    if state is RunState.PUBLISHED:
        lines = [f"{head} \N{EM DASH} published \N{PARTY POPPER}", *post_lines(posts)]
    elif state is RunState.REJECTED:
        by = f" by {run.decision.by}" if run.decision else ""
        lines = [f"{head} \N{EM DASH} rejected{by}."]
    elif state is RunState.EXPIRED:
        lines = [f"{head} \N{EM DASH} the review expired; `/retry {run.id}` posts it again."]
    elif state is RunState.FAILED:
        cause, *after = failure_lines(run, posts)
        lines = [f"{head} \N{EM DASH} {cause}", *after]
    elif state is RunState.CANCELLED:
        lines = [f"{head} \N{EM DASH} cancelled."]
    elif state is RunState.QUEUED:
        lines = [f"{head} \N{EM DASH} approved and queued:", *queued_lines(run), *post_lines(posts)]
    else:
        lines = [
            f"{head} \N{EM DASH} stopped at {state_word(state)}; it resumes after a restart, "
            f"or with `/retry {run.id}`."
        ]
    if elapsed is not None:
        lines.append(f"Took {duration(elapsed)}")
    return clip("\n".join(lines), CONTENT_LIMIT)


def failure_text(run: Run) -> str:
    """`failed at generate: <why>: <cause>`, and whether a retry can help (the run's own
    user-safe words, never an exception's text)."""
    if run.failure is None:
        return "failed at an unknown step: an unexpected error"
    return run.failure.describe()


def failure_lines(run: Run, posts: Sequence[PostRecord] = ()) -> list[str]:
    """A failed run's cause, then what will actually happen next. A run that failed at
    publishing lists each post that is not online with its reason, and what `/retry` does to
    it: a failed post is tried again, an uncertain one never (it waits for a person)."""
    lines = [failure_text(run)]
    failure = run.failure
    unposted = [post for post in posts if post.state is not PostState.POSTED]
    if failure is not None and failure.doing == "publish" and unposted:
        return [*lines, *problem_lines(unposted), publish_next(run.id, unposted)]
    if failure is not None and not failure.retryable:
        return [*lines, f"Once that is fixed, `/retry {run.id}` resumes it."]
    return [*lines, f"`/retry {run.id}` resumes it."]


def problem_lines(posts: Sequence[PostRecord]) -> list[str]:
    """`• twitter: failed · <its reason>` for each post that is not online."""
    return [
        clip(
            f"\N{BULLET} {post.platform.value}: {post.state.value} \N{MIDDLE DOT} {post.error}", 400
        )
        if post.error
        else f"\N{BULLET} {post.platform.value}: {post.state.value}"
        for post in posts
        if post.state is not PostState.POSTED
    ]


def _names(posts: Sequence[PostRecord]) -> str:
    return ", ".join(post.platform.value for post in posts)


def publish_next(run_id: str, posts: Sequence[PostRecord]) -> str:
    """What `/retry` of a run failed at publishing does to its posts, and what a person does
    for an uncertain one (see the README's "Paused accounts and uncertain posts")."""
    failed = [post for post in posts if post.state is PostState.FAILED]
    posting = [post for post in posts if post.state is PostState.POSTING]
    uncertain = [post for post in posts if post.state is PostState.UNCERTAIN]
    said: list[str] = []
    if failed:
        said.append(
            f"`/retry {run_id}` tries {_names(failed)} again (first do what its reason above "
            "asks, if anything); nothing already online is posted twice."
        )
    if posting:
        said.append(
            f"`/retry {run_id}` looks for the {_names(posting)} post on the account before "
            "anything else; it is never posted blind."
        )
    if uncertain:
        if failed or posting:
            said.append(f"A retry leaves {_names(uncertain)} alone: it may be online already.")
        else:
            said.append(
                f"`/retry {run_id}` changes nothing: the {_names(uncertain)} post may be online "
                "already, so it is never posted again by itself."
            )
        said.append(
            "A person looks at the account and sets the post's record to posted if it is "
            'there, else to failed (README, "Paused accounts and uncertain posts"); then '
            f"`/retry {run_id}` finishes the run."
        )
    return " ".join(said)


def nothing_to_retry(run: Run, posts: Sequence[PostRecord]) -> str | None:
    """Why `/retry` of this run would change nothing (`retry_changes_nothing`), or None when
    a retry does something."""
    if not retry_changes_nothing(run, posts):
        return None
    return f"Run {run.id} failed at publishing. {publish_next(run.id, posts)}"


def post_lines(posts: Sequence[PostRecord]) -> list[str]:
    lines = []
    for post in posts:
        if post.state is PostState.POSTED:
            where = f"<{post.url}>" if post.url else (post.remote_id or "posted")
            lines.append(f"\N{BULLET} {post.platform.value}: {where}")
        else:
            lines.append(f"\N{BULLET} {post.platform.value}: {post.state.value}")
    return lines


def when(moment: datetime) -> str:
    """A time as Discord shows it to each reader, in their own zone: `<t:…:f>` (`<t:…:R>`)."""
    stamp = int(moment.timestamp())
    return f"<t:{stamp}:f> (<t:{stamp}:R>)"


def queued_lines(run: Run) -> list[str]:
    """A queued run's waiting posts: `• instagram: <time>` each, soonest first."""
    waiting = sorted(run.queued.items(), key=lambda item: item[1])
    return [f"\N{BULLET} {platform}: {when(due)}" for platform, due in waiting]


def queue_list(entries: Sequence[QueuedPost], *, limit: int = CONTENT_LIMIT) -> str:
    """/queue: per account, each waiting post's time, run and character, soonest first; cut
    at whole lines within `limit` with the count of those left out."""
    if not entries:
        return "The publish queue is empty: every approved run is out."
    lines: list[str] = []
    accounts = sorted({(e.platform.value, e.account) for e in entries})
    for platform, account in accounts:
        lines.append(f"**{platform}** \N{MIDDLE DOT} {clip(account, 64)}")
        lines.extend(
            f"\N{BULLET} {when(e.due_at)} \N{MIDDLE DOT} `{e.run_id}` \N{MIDDLE DOT} {e.character}"
            for e in entries
            if (e.platform.value, e.account) == (platform, account)
        )
    shown: list[str] = []
    size, rest = 0, len(entries)
    for line in lines:
        tail = f"\N{HORIZONTAL ELLIPSIS} and {rest} more post(s)"
        if size + len(line) + 1 + len(tail) > limit:
            shown.append(tail)
            break
        shown.append(line)
        size += len(line) + 1
        rest -= line.startswith("\N{BULLET}")
    return "\n".join(shown)


def runs_list(recent: Sequence[Run], positions: Mapping[str, int | None], *, now: datetime) -> str:
    """/runs: the active runs first (running, then queued), then the recent ones."""
    lines: list[str] = []
    active = [run for run in recent if positions.get(run.id) is not None]
    for run in sorted(active, key=lambda r: positions.get(r.id) or 0):
        position = positions.get(run.id)
        where = "running" if position == 0 else f"queued {ordinal(position or 0)}"
        lines.append(f"`{run.id}` {run.character} \N{EM DASH} {where} ({state_word(run.state)})")
    rest = [run for run in recent if positions.get(run.id) is None]
    if rest:
        lines.append("**Recent**")
    for run in rest:
        age = duration((now - run.updated_at).total_seconds())
        lines.append(f"`{run.id}` {run.character} \N{EM DASH} {state_word(run.state)}, {age} ago")
    return clip("\n".join(lines) or "No runs yet.", CONTENT_LIMIT)


# ---------------------------------------------------------------------------- review


def image_line(number: int, emoji: str, item: MediaItem) -> str:
    """`1️⃣ #1 · score 0.82 · a robot waves` for one candidate."""
    parts = [f"{emoji} **#{number}**"]
    if item.score is not None:
        parts.append(f"score {item.score:.2f}")
    if item.reason:
        parts.append(clip(" ".join(item.reason.split()), 160))
    return " \N{MIDDLE DOT} ".join(parts)


def review_text(
    run: Run,
    lines: Sequence[str],
    *,
    part: int,
    parts: int,
    deadline: datetime | None,
    notes: Sequence[str] = (),
) -> str:
    """The content of one review message: a header, its images' lines, and on the last part
    how to answer."""
    header = f"**Review run `{run.id}`** \N{MIDDLE DOT} {run.character}"
    if run.attempt > 1:
        header += f" \N{MIDDLE DOT} attempt {run.attempt}"
    if parts > 1:
        header += f" \N{MIDDLE DOT} part {part}/{parts}"
    if part == 1 and run.sound_prompt:
        lines = [f"\N{SPEAKER WITH THREE SOUND WAVES} Sound: {run.sound_prompt}", *lines]
    tail: list[str] = []
    if part == parts:
        tail.append(
            f"React with the numbers of the images to publish, then {APPROVE} to approve "
            f"(no number: all of them) or {REJECT} to reject."
        )
        tail.extend(ACTION_HELP[kind] for kind in run.offers if kind in ACTION_HELP)
        if deadline is not None:
            tail.append(f"Expires <t:{int(deadline.timestamp())}:R>.")
    # the header and the deadline always survive the clip: a reviewer sees whose review it
    # is and until when (the bot itself knows its reviews by their markers, never by this text)
    room = CONTENT_LIMIT - len(header) - sum(len(line) + 1 for line in tail) - 1
    middle = clip("\n".join([*lines, *notes]), max(room, 0))
    return clip("\n".join([header, *([middle] if middle else []), *tail]), CONTENT_LIMIT)


#: a narrated run's script up to this long is shown in the review message; a longer one is
#: attached as SCRIPT_FILE (the message has room for 2,000 characters in all)
SCRIPT_INLINE_LIMIT = 1000
SCRIPT_FILE = "script.txt"


def script_note(run: Run) -> tuple[str | None, bytes | None]:
    """What a review shows of a narrated run's script: (its text for the message, or None;
    the bytes of SCRIPT_FILE when too long for it, or None). Nothing for other runs."""
    if run.script is None:
        return None, None
    text = run.script.text()
    if len(text) <= SCRIPT_INLINE_LIMIT:
        return f"**Script**\n{text}", None
    scenes = len(run.script.scenes)
    return f"The script ({scenes} scenes) is attached as {SCRIPT_FILE}.", text.encode()


def caption_embeds(captions: Mapping[str, str]) -> list[discord.Embed]:
    """One embed per platform's caption (captions outgrow message content: 2,200 on Instagram)."""
    return [
        discord.Embed(title=f"Caption \N{MIDDLE DOT} {platform}", description=clip(text, 4000))
        for platform, text in sorted(captions.items())
    ]


def caption_refusal(problems: Sequence[str]) -> str:
    """The private answer to a caption edit over a platform's limits: what is over, that
    nothing was saved, and that the next form keeps the text."""
    return clip(
        f"Not saved: {'; '.join(problems)}. Shorten it and press Edit caption again: the form "
        "opens with your text.",
        CONTENT_LIMIT,
    )


#: one line per action a review offers
ACTION_HELP = {
    ActionKind.REROLL: f"{REROLL} makes a new set (new seeds); this one stays until you decide.",
    ActionKind.MORE_LIKE: f"{MORE_LIKE} with one number marked adds variations of that image.",
    ActionKind.UPSCALE: f"{UPSCALE} approves and upscales the chosen images before publishing.",
}


def action_line(action: ReviewAction, number: int | None) -> str:
    """What became of a review closed by a reviewer's action."""
    if action.kind is ActionKind.MORE_LIKE:
        return f"{MORE_LIKE} {action.by} asked for more like #{number}; a new review follows."
    return f"{REROLL} {action.by} asked for a reroll; the new set follows."


def decision_line(approved: bool, by: str, numbers: Sequence[int]) -> str:
    if not approved:
        return f"{REJECT} Rejected by {by}."
    chosen = ", ".join(f"#{n}" for n in numbers)
    return f"{APPROVE} Approved by {by}: {chosen}."


def reminder_text(run: Run, deadline: datetime) -> str:
    return (
        f"\N{ALARM CLOCK} The review of run `{run.id}` ({run.character}) expires "
        f"<t:{int(deadline.timestamp())}:R>."
    )


# ---------------------------------------------------------------------------- notices


def requester(requested_by: str) -> str:
    """Who asked for a run, as Discord shows it: a member as a mention (notices are sent
    without pings), the schedule by name, anything else as written."""
    kind, _, rest = requested_by.partition(":")
    if kind == "discord" and rest.isdigit():
        return f"<@{rest}>"
    if requested_by == SCHEDULE_REQUESTER:
        return "the schedule"
    return requested_by


def notice(run: Run, posts: Sequence[PostRecord] = ()) -> str | None:
    """The notice for a run's new state, or None when that state is not announced."""
    head = f"Run `{run.id}` \N{MIDDLE DOT} {run.character}"
    by = requester(run.job.requested_by)
    state = run.state
    if state is RunState.CREATED:
        return clip(f"\N{SEEDLING} {head} started (asked by {by}).", CONTENT_LIMIT)
    if state is RunState.AWAITING_REVIEW:
        return clip(f"\N{EYES} {head} is waiting for review.", CONTENT_LIMIT)
    if state is RunState.PUBLISHED:
        return clip("\n".join([f"\N{PARTY POPPER} {head} published.", *post_lines(posts)]), 2000)
    if state is RunState.FAILED:
        cause, *after = failure_lines(run, posts)
        return clip("\n".join([f"\N{WARNING SIGN} {head} {cause}", *after]), CONTENT_LIMIT)
    if state is RunState.EXPIRED:
        return clip(f"\N{HOURGLASS} {head}: the review expired; /retry posts it again.", 2000)
    if state is RunState.REJECTED:
        return clip(f"\N{WASTEBASKET} {head} was rejected.", CONTENT_LIMIT)
    if state is RunState.QUEUED:
        lines = [f"\N{ALARM CLOCK} {head} is queued:", *queued_lines(run)]
        return clip("\n".join(lines), CONTENT_LIMIT)
    return None
