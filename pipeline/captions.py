"""Captions per platform: the model writes a text and hashtags; we merge them with the
character's default hashtags (deduplicated, ignoring case), put the platform prefix first, and
fit the whole to the platform: Instagram 2,200 characters and 30 hashtags, X 280 weighted
characters as twitter-text counts them. Text is shortened at sentence or word boundaries (CJK
at character boundaries), never inside a word, URL or hashtag; hashtags go from the end.

Imports characters, models, ports, `pipeline.tasks` and `pipeline.llm.parsing`; never a concrete
provider.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pipeline.characters import Character
from pipeline.llm.parsing import AnswerError, clean_text, extract_json
from pipeline.models import Platform
from pipeline.ports import JsonSchema, TextModel
from pipeline.tasks import gather_all

log = logging.getLogger(__name__)

ELLIPSIS = "…"


def load_counter() -> None:
    """Import twitter-text, X's length counter (0.5 s; blocking: call it in a thread before the
    first caption, or that caption's step holds the event loop for it)."""
    import twitter_text  # noqa: F401


def weighted_length(text: str) -> int:
    """X's length of `text`: URLs count 23, CJK and emoji 2, most Latin text 1."""
    from twitter_text import parse_tweet  # imported on first use: 0.5 s a start otherwise

    return int(parse_tweet(text).weightedLength)


@dataclass(frozen=True)
class PlatformLimits:
    """How long a caption may be on a platform, and how it is counted."""

    max_length: int
    max_hashtags: int
    count: Callable[[str], int]
    #: hashtags are dropped before the text is cut below this length
    min_text: int


LIMITS: dict[Platform, PlatformLimits] = {
    # Instagram: 2,200 characters and at most 30 hashtags per caption (Instagram Help Center).
    Platform.INSTAGRAM: PlatformLimits(2200, 30, len, 300),
    # X: 280 weighted characters (developer.x.com, "Counting characters"); no hashtag cap.
    Platform.TWITTER: PlatformLimits(280, 280, weighted_length, 80),
}

CAPTION_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "hashtags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["text", "hashtags"],
    "additionalProperties": False,
}

_GUIDE = {
    Platform.INSTAGRAM: (
        "Write an Instagram post for the character's own account: a short article of two to "
        "four short paragraphs (under 1,200 characters) that tells the little story of the "
        "picture in the character's voice, warm and specific, with at most two emoji. Then up "
        "to 12 relevant hashtags."
    ),
    Platform.TWITTER: (
        "Write a post for X from the character's own account: one or two lively sentences, "
        "under 180 characters, at most one emoji. Then up to 3 relevant hashtags."
    ),
}

_SYSTEM = (
    "{guide} Do not put hashtags inside the text. Answer with JSON only, in this shape: "
    '{{"text": "...", "hashtags": ["#one", "#two"]}}. Write in {language}.'
)


# ---------------------------------------------------------------------------- hashtags


def normalize_hashtag(tag: str) -> str | None:
    """`#word` from a tag written any way ('word', '#Word!', fullwidth '#'); None if it is
    not a hashtag (empty, or only digits)."""
    text = unicodedata.normalize("NFKC", tag).strip().lstrip("#")
    text = re.sub(r"[^\w]", "", text)
    if not text or text.isdigit():
        return None
    return "#" + text


def merge_hashtags(*groups: Iterable[str], text: str = "") -> list[str]:
    """Hashtags in order, each once ignoring case, without those already in `text`."""
    seen = {tag.casefold() for tag in re.findall(r"#\w+", text)}
    merged: list[str] = []
    for group in groups:
        for raw in group:
            tag = normalize_hashtag(raw)
            if tag is not None and tag.casefold() not in seen:
                seen.add(tag.casefold())
                merged.append(tag)
    return merged


# ---------------------------------------------------------------------------- shortening


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


# written as escapes: ruff rightly flags look-alike characters in source
_CJK_STOPS = "\u3002\uff01\uff1f"  # ideographic full stop, fullwidth ! and ?
_SENTENCE_END = frozenset(".!?\u2026" + _CJK_STOPS)
_CLOSERS = frozenset("\"')]\u300d\u300f\uff09\u201d\u2019")  # quotes and brackets that close
_TRIM = " ,;:\u3001\uff0c"  # what a cut text should not end with (incl. CJK commas)
_HASH_MARKS = ("#", "@", "\uff03")


def _cuts(text: str) -> tuple[list[int], list[int]]:
    """Positions where `text` may end: after a sentence, and after a word (or a CJK char)."""
    sentences: list[int] = []
    words: list[int] = []
    for token in re.finditer(r"\S+", text):
        start, end = token.span()
        words.append(end)
        word = token.group()
        whole = word.startswith(_HASH_MARKS) or "://" in word or word.startswith("www.")
        for offset in range(1, len(word)):
            position = start + offset
            before, after = text[position - 1], text[position]
            if not whole and (_wide(before) or _wide(after)):
                words.append(position)  # CJK has no spaces: any character boundary will do
            if before in _CJK_STOPS and after not in _CLOSERS:
                sentences.append(position)
        stripped = word.rstrip("".join(_CLOSERS))
        if stripped and stripped[-1] in _SENTENCE_END:
            sentences.append(end)
    return sorted(set(sentences)), sorted(set(words))


def _largest(cuts: list[int], fits: Callable[[int], bool]) -> int | None:
    """The largest cut that fits, by binary search (fitting shrinks as the cut grows)."""
    low, high, best = 0, len(cuts) - 1, None
    while low <= high:
        middle = (low + high) // 2
        if fits(cuts[middle]):
            best = cuts[middle]
            low = middle + 1
        else:
            high = middle - 1
    return best


def shorten(text: str, fits: Callable[[str], bool]) -> str:
    """The longest start of `text` that `fits`: whole sentences when that keeps most of it,
    else whole words (or CJK characters) and an ellipsis; "" when not even a word fits."""
    text = text.strip()
    if fits(text):
        return text
    sentences, words = _cuts(text)
    by_sentence = _largest(sentences, lambda cut: fits(text[:cut].rstrip()))
    by_word = _largest(words, lambda cut: fits(text[:cut].rstrip(_TRIM) + ELLIPSIS))
    if by_sentence is not None and (by_word is None or by_sentence >= 0.6 * by_word):
        return text[:by_sentence].rstrip()
    if by_word is not None:
        return text[:by_word].rstrip(_TRIM) + ELLIPSIS
    return ""


def compose(text: str, hashtags: Sequence[str], *, prefix: str = "") -> str:
    """Prefix, text and a hashtag line, as posted."""
    head = text.strip()
    if prefix.strip():
        head = f"{prefix.rstrip()} {head}" if head else prefix.strip()
    tags = " ".join(hashtags)
    if not tags:
        return head
    return f"{head}\n\n{tags}" if head else tags


def fit_caption(text: str, hashtags: Sequence[str], *, platform: Platform, prefix: str = "") -> str:
    """The caption for `platform`: within its length and hashtag limits, text cut cleanly."""
    limits = LIMITS[platform]

    def fits(candidate: str) -> bool:
        return limits.count(candidate) <= limits.max_length

    tags = list(hashtags[: limits.max_hashtags])
    if fits(compose(text, tags, prefix=prefix)):
        return compose(text, tags, prefix=prefix)
    wanted = min(limits.min_text, limits.count(text.strip()))
    while tags and limits.count(compose("", tags, prefix=prefix)) + wanted + 3 > limits.max_length:
        tags.pop()  # the text matters more than the last hashtags
    while True:
        body = shorten(text, lambda b: fits(compose(b, tags, prefix=prefix)))
        if body or not tags:
            break
        tags.pop()
    caption = compose(body, tags, prefix=prefix)
    if not fits(caption):  # only a prefix longer than the platform allows gets here
        caption = shorten(caption, fits)
    return caption


# ---------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class Draft:
    """What the model wrote for one platform, before fitting."""

    text: str
    hashtags: tuple[str, ...]


def parse_draft(answer: str) -> Draft:
    """A Draft from a JSON answer; raises AnswerError when there is no usable text."""
    value = extract_json(answer)
    if not isinstance(value, dict):
        raise AnswerError("the caption answer is not a JSON object")
    text = value.get("text") or value.get("caption") or value.get("article")
    if not isinstance(text, str) or not text.strip():
        raise AnswerError("the caption answer has no text")
    raw = value.get("hashtags", [])
    tags = raw.split() if isinstance(raw, str) else [t for t in raw if isinstance(t, str)]
    return Draft(text=text.strip(), hashtags=tuple(tags))


def _plain_draft(answer: str) -> Draft:
    """A last resort for a model that ignored the JSON: its text, with trailing hashtags."""
    text = clean_text(answer)
    tail = re.search(r"(?:\s*#\w+)+\s*$", text)
    tags = tuple(re.findall(r"#\w+", tail.group())) if tail else ()
    return Draft(text=text[: tail.start()].strip() if tail else text, hashtags=tags)


async def write_caption(
    platform: Platform,
    *,
    character: Character,
    prompt: str,
    descriptions: Sequence[str],
    model: TextModel,
    language: str = "English",
    attempts: int = 2,
) -> str:
    """One platform's caption, fitted; raises ModelError when no model answers."""
    system = _SYSTEM.format(guide=_GUIDE[platform], language=language)
    about = character.spec.character.description
    request = "\n".join(
        [
            f"Character: {character.name}" + (f" ({about})" if about else ""),
            f"The idea of the post: {prompt}",
            *(f"Picture {i + 1}: {d}" for i, d in enumerate(descriptions[:4])),
        ]
    )
    draft: Draft | None = None
    answer = ""
    for attempt in range(1, attempts + 1):
        answer = await model.complete(system=system, prompt=request, schema=CAPTION_SCHEMA)
        try:
            draft = parse_draft(answer)
            break
        except AnswerError as exc:
            log.warning(
                "%s caption answer %d of %d unreadable: %s", platform, attempt, attempts, exc
            )
    if draft is None:
        draft = _plain_draft(answer)
    social = character.spec.social_media
    config = social.platforms.get(platform)
    hashtags = merge_hashtags(social.default_hashtags, draft.hashtags, text=draft.text)
    return fit_caption(
        draft.text, hashtags, platform=platform, prefix=config.prefix if config else ""
    )


async def write_captions(
    *,
    character: Character,
    prompt: str,
    descriptions: Sequence[str],
    model: TextModel,
    platforms: Sequence[Platform] | None = None,
    language: str = "English",
) -> dict[Platform, str]:
    """A fitted caption for each platform (default: the character's enabled ones), at once."""
    chosen = list(platforms) if platforms is not None else list(character.enabled_platforms())
    # a ModelError (or any failure) reaches the run as itself, the other captions cancelled
    captions = await gather_all(
        write_caption(
            platform,
            character=character,
            prompt=prompt,
            descriptions=descriptions,
            model=model,
            language=language,
        )
        for platform in chosen
    )
    return dict(zip(chosen, captions, strict=True))
