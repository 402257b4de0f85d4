"""Prompt methods: how a run's idea is written. `arbitrary` (a fresh idea for the character),
`news` (an unused news row turned into a scene; marked used once written) and `two_character`
(another member of the character's group; a scene of the two).

Chosen by the character's weights unless the job names one. The idea is model text: cleaned of
control characters, put on one line and cut to MAX_IDEA_CHARS before it is stored or used. Imports
characters, the ports and `pipeline.llm.parsing`; never a concrete provider or store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from random import Random

from pipeline.characters import Character
from pipeline.errors import ModelError, RunError
from pipeline.llm.parsing import clean_text, read_off_loop
from pipeline.ports import CatalogStore, NewsItem, TextModel
from pipeline.prompts.library import PROMPT_METHODS

log = logging.getLogger(__name__)

_COMMON = (
    "Answer with the idea only: one or two plain sentences in English, under 60 words, "
    "no title, no list, no quotation marks. Name the characters exactly as given."
)

ARBITRARY_SYSTEM = (
    "You invent ideas for single pictures of a recurring character on a social media account. "
    "Each idea puts the character somewhere specific doing something specific, with a mood and "
    "a time of day, and is fresh: avoid the obvious pose-and-smile picture. " + _COMMON
)

NEWS_SYSTEM = (
    "You turn a news story into an idea for a single picture of a recurring character. Keep "
    "the topic recognisable, but show it as a light, friendly scene with the character taking "
    "part in it; never show real people, victims, logos or violence, and do not take sides. "
    + _COMMON
)

TWO_CHARACTER_SYSTEM = (
    "You invent ideas for single pictures in which two characters meet. Give them something "
    "to do together (play, cook, argue, explore, share a secret) and say where it happens, so "
    "the picture tells a small story between the two. " + _COMMON
)

#: an idea longer than this is cut at a word: we ask for under 60 words, and the idea is sent
#: again with every later request of the run
MAX_IDEA_CHARS = 1000

#: how many of the newest unused news rows the `news` method chooses from
NEWS_WINDOW = 5


@dataclass(frozen=True)
class WrittenPrompt:
    """A run's idea and how it came about (for the Run record's choices)."""

    text: str
    method: str
    news_id: int | None = None
    partner: str | None = None


def _about(character: Character, subject: str) -> str:
    lines = [f"Character: {subject}"]
    description = character.spec.character.description
    if description and subject == character.name:
        lines.append(f"What the character looks like: {description}")
    return "\n".join(lines)


async def _ask(model: TextModel, system: str, prompt: str, *, attempts: int = 2) -> str:
    for attempt in range(1, attempts + 1):
        answer = await model.complete(system=system, prompt=prompt)
        text = await read_off_loop(lambda text: clean_text(text, limit=MAX_IDEA_CHARS), answer)
        if text:
            return text
        log.warning("the prompt answer %d of %d was empty", attempt, attempts)
    raise ModelError(
        f"the prompt model gave an empty idea {attempts} times",
        user_message="The language model gave no idea for the prompt; the run can be retried.",
    )


async def write_prompt(
    character: Character,
    *,
    model: TextModel,
    store: CatalogStore,
    rng: Random,
    method: str | None = None,
    subject: str | None = None,
    video: bool = False,
) -> WrittenPrompt:
    """Write the run's idea with `method` (None: by the character's weights).

    `subject` is who the idea is about (default: the character's name; a group character's run
    may pass the member it picked). A method named by the job that cannot work (no unused news,
    no one else in the group) raises RunError; one chosen by weight falls back to `arbitrary`.
    """
    chosen = method or character.pick_prompt_method(rng)
    if chosen not in PROMPT_METHODS:
        raise RunError(f"unknown prompt method {chosen!r} (known: {', '.join(PROMPT_METHODS)})")
    subject = subject or character.name
    medium = "a short video clip" if video else "a picture"
    if chosen == "news":
        news = await store.recent_news(character=character.key, limit=NEWS_WINDOW)
        if news:
            return await _from_news(character, subject, rng.choice(news), model, store, medium)
        _cannot(method, f"no unused news for {character.key}")
    elif chosen == "two_character":
        group = character.group_name
        partner = (
            await store.pick_group_member(group, rng, exclude={subject, character.name})
            if group
            else None
        )
        if partner is not None:
            prompt = (
                f"{_about(character, subject)}\nSecond character: {partner.name}\n"
                f"Write one idea for {medium} of {subject} and {partner.name} together."
            )
            text = await _ask(model, TWO_CHARACTER_SYSTEM, prompt)
            return WrittenPrompt(text=text, method=chosen, partner=partner.name)
        _cannot(method, f"no other active member in group {group!r}" if group else "no group")
    prompt = f"{_about(character, subject)}\nWrite one idea for {medium} of {subject}."
    return WrittenPrompt(text=await _ask(model, ARBITRARY_SYSTEM, prompt), method="arbitrary")


def _cannot(requested: str | None, why: str) -> None:
    """Fail when the job asked for this method; otherwise note the fallback to `arbitrary`."""
    if requested is not None:
        raise RunError(f"the {requested} prompt method cannot be used: {why}")
    log.info("prompt method falls back to arbitrary: %s", why)


async def _from_news(
    character: Character,
    subject: str,
    item: NewsItem,
    model: TextModel,
    store: CatalogStore,
    medium: str,
) -> WrittenPrompt:
    content = " ".join(item.content.split())[:1500]
    prompt = (
        f"{_about(character, subject)}\nNews headline: {item.title}\n"
        + (f"Topic: {item.keyword}\n" if item.keyword else "")
        + f"News text: {content}\nWrite one idea for {medium} of {subject} about this news."
    )
    text = await _ask(model, NEWS_SYSTEM, prompt)
    await store.mark_news_used(character.key, item.id)  # only once the idea is written
    return WrittenPrompt(text=text, method="news", news_id=item.id)
