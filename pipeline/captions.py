"""Captions per platform: the model writes a text and hashtags; we merge them with the
character's default hashtags (deduplicated, ignoring case), put the platform prefix first, and
fit the whole to the platform: Instagram 2,200 characters and 30 hashtags, X 280 weighted
characters as twitter-text counts them, Bluesky 300 graphemes, in each case over the whole
caption (hashtags written in the text count too). Text is shortened at sentence or word
boundaries (CJK at character boundaries), never inside a word, URL or hashtag; hashtags go
from the end.

An answer that cannot be read is asked for again, then fails as ModelError: a caption is never
the raw answer. Fitting is linear in the answer's size (the text is first cut to what could
ever fit) and runs in a thread, since X's counter is pure Python.

Imports characters, errors, models, ports, `pipeline.tasks` and `pipeline.llm.parsing`; never a
concrete provider.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.characters import Character
from pipeline.errors import ModelError
from pipeline.llm.parsing import AnswerError, clean_model_text, excerpt, extract_json, off_loop
from pipeline.models import Platform
from pipeline.ports import JsonSchema, TextModel
from pipeline.tasks import gather_all

log = logging.getLogger(__name__)

ELLIPSIS = "…"


def load_counter() -> None:
    """Import twitter-text, X's length counter, and count a bare domain once, which imports the
    IDNA codec it uses (0.5 s; blocking: call it in a thread before the first caption)."""
    from twitter_text import parse_tweet

    parse_tweet("example.com")


def weighted_length(text: str) -> int:
    """X's length of `text`: URLs count 23, CJK and emoji 2, most Latin text 1."""
    from twitter_text import parse_tweet  # imported on first use: 0.5 s a start otherwise

    return int(parse_tweet(text).weightedLength)


def graphemes(text: str) -> int:
    """How many user-perceived characters `text` holds (extended grapheme clusters, UAX #29,
    by the `regex` module's `\\X`): a flag, a family emoji or an accented letter is one."""
    import regex  # imported on first use, like X's counter

    return sum(1 for _ in regex.finditer(r"\X", text))


#: Bluesky's post text: at most 300 graphemes and 3,000 UTF-8 bytes (app.bsky.feed.post's
#: lexicon: maxGraphemes 300, maxLength 3000)
BLUESKY_GRAPHEMES = 300
BLUESKY_BYTES = 3000


def bluesky_length(text: str) -> int:
    """Bluesky's length of `text` in graphemes; a text over the 3,000-byte cap counts as over
    the 300 graphemes however few it has (no real caption gets there)."""
    count = graphemes(text)
    if len(text.encode("utf-8")) > BLUESKY_BYTES:
        return max(count, BLUESKY_GRAPHEMES + 1)
    return count


#: a Facebook post's message, in characters
FACEBOOK_CHARACTERS = 63206
#: a Threads post's text: 500 characters, an emoji counted as its UTF-8 bytes
#: (developers.facebook.com/documentation/threads/posts, "Limitations")
THREADS_CHARACTERS = 500


def _emoji(char: str) -> bool:
    import unicodedata

    return ord(char) >= 0x1F000 or char in "\u200d\ufe0f" or unicodedata.category(char) == "So"


def threads_length(text: str) -> int:
    """Threads' length of `text`: one a character, an emoji (and its joiners and variation
    selectors) as many as its UTF-8 bytes."""
    return sum(len(char.encode("utf-8")) if _emoji(char) else 1 for char in text)


@dataclass(frozen=True)
class PlatformLimits:
    """How long a caption may be on a platform, and how it is counted."""

    max_length: int
    max_hashtags: int
    count: Callable[[str], int]
    #: hashtags are dropped before the text is cut below this length
    min_text: int
    #: the most characters of text that could ever fit: a longer text is cut to this first
    text_scan: int


LIMITS: dict[Platform, PlatformLimits] = {
    # Instagram: 2,200 characters and at most 30 hashtags per caption (Instagram Help Center).
    Platform.INSTAGRAM: PlatformLimits(2200, 30, len, 300, 2200),
    # X: 280 weighted characters (developer.x.com, "Counting characters"); no hashtag cap. Most
    # characters weigh 1 or 2, a URL 23 and an emoji sequence 2 however many code points it
    # takes (a family emoji is 7): four characters a unit leaves room for any real caption.
    Platform.TWITTER: PlatformLimits(280, 280, weighted_length, 80, 4 * 280),
    # Bluesky: 300 graphemes (and 3,000 bytes, which ten bytes a grapheme reaches: the text
    # read is cut there); no hashtag cap, so as many as the length takes.
    Platform.BLUESKY: PlatformLimits(
        BLUESKY_GRAPHEMES, BLUESKY_GRAPHEMES, bluesky_length, 80, BLUESKY_BYTES
    ),
    # Facebook: a Page post's message may be 63,206 characters; no hashtag cap.
    Platform.FACEBOOK: PlatformLimits(
        FACEBOOK_CHARACTERS, FACEBOOK_CHARACTERS, len, 300, FACEBOOK_CHARACTERS
    ),
    # Threads: 500 characters (emoji by their bytes) and one hashtag, its topic tag; any more
    # are shown as text, not tags, so no more than one is written.
    Platform.THREADS: PlatformLimits(THREADS_CHARACTERS, 1, threads_length, 80, THREADS_CHARACTERS),
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
    Platform.BLUESKY: (
        "Write a post for Bluesky from the character's own account: one to three friendly "
        "sentences, under 220 characters, at most one emoji. Then up to 3 relevant hashtags."
    ),
    Platform.FACEBOOK: (
        "Write a Facebook Page post for the character's own page: two or three warm, "
        "conversational sentences (under 400 characters) that invite a comment, at most two "
        "emoji. Then up to 3 relevant hashtags."
    ),
    Platform.THREADS: (
        "Write a Threads post from the character's own account: one to three casual, "
        "conversational sentences, under 300 characters, at most one emoji. Then exactly one "
        "relevant hashtag (Threads makes it the post's topic)."
    ),
}

_SYSTEM = (
    "{guide} Do not put hashtags inside the text. Answer with JSON only, in this shape: "
    '{{"text": "...", "hashtags": ["#one", "#two"]}}. Write in {language}.'
)


# ---------------------------------------------------------------------------- hashtags


#: a longer "hashtag" is no tag a person would type or read (and is not worth normalizing)
MAX_HASHTAG_CHARS = 100


def normalize_hashtag(tag: str) -> str | None:
    """`#word` from a tag written any way ('word', '#Word!', fullwidth '#'); None if it is
    not a hashtag (empty, only digits, or longer than MAX_HASHTAG_CHARS)."""
    if len(tag) > MAX_HASHTAG_CHARS:
        return None
    text = unicodedata.normalize("NFKC", tag).strip().lstrip("#")
    text = re.sub(r"[^\w]", "", text)
    if not text or text.isdigit():
        return None
    return "#" + text


def merge_hashtags(*groups: Iterable[str], text: str = "", limit: int | None = None) -> list[str]:
    """Hashtags in order, each once ignoring case, without those already in `text`; at most
    `limit` of them (the groups are read no further than needed)."""
    seen = {"#" + tag.lstrip("#\uff03").casefold() for tag in _HASHTAG.findall(text)}
    merged: list[str] = []
    if limit is not None and limit <= 0:
        return merged
    for group in groups:
        for raw in group:
            tag = normalize_hashtag(raw)
            if tag is not None and tag.casefold() not in seen:
                seen.add(tag.casefold())
                merged.append(tag)
                if limit is not None and len(merged) >= limit:
                    return merged
    return merged


#: a hashtag as a platform may link it: '#' (or fullwidth) marks and word characters. Counted
#: generously (a tag of digits counts too), so a caption never holds more than the limit.
_HASHTAG = re.compile(r"[#\uff03]+\w+")
_WORD = re.compile(r"\S+")
_WHITESPACE = re.compile(r"\s")


def count_hashtags(text: str) -> int:
    """How many hashtags `text` holds, wherever they are."""
    return sum(1 for _ in _HASHTAG.finditer(text))


def _unmark_beyond(text: str, keep: int) -> str:
    """`text` with every hashtag after the first `keep` turned into its plain word."""
    seen = 0

    def unmark(match: re.Match[str]) -> str:
        nonlocal seen
        seen += 1
        return match.group() if seen <= keep else match.group().lstrip("#\uff03")

    return _HASHTAG.sub(unmark, text)


def _split_trailing_hashtags(text: str) -> tuple[str, list[str]]:
    """`text` without the run of hashtags that ends it, and those hashtags: models that ignore
    "no hashtags in the text" put them there, where they belong in the hashtag line."""
    words = list(_WORD.finditer(text))
    first = len(words)
    while first > 0 and _HASHTAG.fullmatch(words[first - 1].group()):
        first -= 1
    if first == len(words):
        return text, []
    cut = words[first].start()
    return text[:cut].rstrip(), [word.group() for word in words[first:]]


def _bounded(text: str, limit: int) -> str:
    """The start of `text` that could ever fit `limit` characters: cut at the first space after
    the limit (so the last word, URL or hashtag stays whole); with no space there, hard at twice
    the limit between CJK characters, else before the word that runs past it (a URL cut short
    would still count as a whole one)."""
    if len(text) <= limit:
        return text
    space = _WHITESPACE.search(text, limit, 2 * limit)
    if space is not None:
        return text[: space.start()]
    cut = 2 * limit
    if len(text) <= cut:
        return text  # its last word ends the text: it is whole
    if _wide(text[cut - 1]) or _wide(text[cut]):
        return text[:cut]
    return text[: max(0, text.rfind(" ", 0, cut), text.rfind("\n", 0, cut))]


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


def _fits_at_all(text: str, cuts: tuple[list[int], list[int]], fits: Callable[[str], bool]) -> bool:
    """Whether `shorten(text, fits)` keeps anything: its shortest cut fits (or the text, when it
    is one word). Short strings only: X's counter takes 8 ms on a whole 1,000-character text."""
    sentences, words = cuts
    return (
        (bool(sentences) and fits(text[: sentences[0]].rstrip()))
        or (bool(words) and fits(text[: words[0]].rstrip(_TRIM) + ELLIPSIS))
        or (len(words) <= 1 and fits(text))
    )


def _most(count: int, ok: Callable[[int], bool]) -> int:
    """The largest k in 0..count with ok(k), by binary search (ok holds up to some k)."""
    low, high = 0, count
    while low < high:
        middle = (low + high + 1) // 2
        if ok(middle):
            low = middle
        else:
            high = middle - 1
    return low


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
    """The caption for `platform`: within its length and hashtag limits (hashtags in the text
    and prefix count too), text cut cleanly, `hashtags` merged after a run of hashtags that ends
    the text. Linear in the text's size: it is first cut to what could ever fit."""
    limits = LIMITS[platform]

    def fits(candidate: str) -> bool:
        return limits.count(candidate) <= limits.max_length

    text, trailing = _split_trailing_hashtags(_bounded(text.strip(), limits.text_scan))
    room = max(0, limits.max_hashtags - count_hashtags(prefix))
    text = _unmark_beyond(text, room)  # a text with more hashtags than allowed keeps the words
    room -= count_hashtags(text)
    # each hashtag weighs at least 2 and a space: no more than a third of the length can fit
    most = min(room, (limits.max_length + 1) // 3)
    tags = merge_hashtags(hashtags, trailing, text=text, limit=most)
    caption = compose(text, tags, prefix=prefix)
    if fits(caption):
        return caption
    wanted = min(limits.min_text, limits.count(text))
    # the text matters more than the last hashtags: keep room for some of it
    tags = tags[
        : _most(
            len(tags),
            lambda k: (
                limits.count(compose("", tags[:k], prefix=prefix)) + wanted + 3 <= limits.max_length
            ),
        )
    ]
    cuts = _cuts(text)
    tags = tags[
        : _most(
            len(tags),
            lambda k: _fits_at_all(text, cuts, lambda b: fits(compose(b, tags[:k], prefix=prefix))),
        )
    ]
    body = shorten(text, lambda b: fits(compose(b, tags, prefix=prefix)))
    caption = compose(body, tags, prefix=prefix)
    if not fits(caption):  # only a prefix longer than the platform allows gets here
        caption = shorten(caption, fits)
    return caption


# ---------------------------------------------------------------------------- checking

#: the platforms as people name them
_PLATFORM_NAMES = {
    Platform.INSTAGRAM: "Instagram",
    Platform.TWITTER: "X",
    Platform.BLUESKY: "Bluesky",
    Platform.FACEBOOK: "Facebook",
    Platform.THREADS: "Threads",
}


def compose_caption(prefix: str, caption: str) -> str:
    """The character's prefix, then the caption (a space between unless the prefix ends in one),
    as it is posted; a caption that already starts with the prefix is left as it is."""
    caption = caption.strip()
    if not prefix:
        return caption
    if caption.startswith(prefix.strip()):
        return caption
    joiner = "" if prefix[-1].isspace() else " "
    return f"{prefix}{joiner}{caption}".strip()


def caption_problems(platform: Platform, caption: str) -> list[str]:
    """What puts `caption`, exactly as posted (prefix included), over `platform`'s limits:
    Instagram's 2,200 characters and 30 hashtags, X's 280 weighted characters, each counted over
    the whole caption (hashtags in the text too); [] when it fits. For a text a person wrote,
    which `fit_caption` never shortened. X's counter is pure Python: call it in a thread."""
    limits = LIMITS[platform]
    name = _PLATFORM_NAMES[platform]
    problems = []
    length = limits.count(caption)
    if length > limits.max_length:
        what = "caption" if platform is Platform.INSTAGRAM else "post"
        problems.append(f"the {what} is {length} of {name}'s {limits.max_length} characters")
    tags = count_hashtags(caption)
    if tags > limits.max_hashtags:
        problems.append(f"the caption has {tags} hashtags, and {name} takes {limits.max_hashtags}")
    return problems


def edited_caption_problems(character: Character | None, captions: Mapping[str, str]) -> list[str]:
    """`platform: problem` for each caption a person wrote that would be over its platform's
    limits as posted (the character's prefix first; no prefix when the character is gone). A
    person's words are refused, never cut: `fit_caption` is for the model's. Blocking (X's
    counter): call it in a thread."""
    found = []
    for key, text in captions.items():
        try:
            platform = Platform(key)
        except ValueError:
            continue  # no platform of ours: never posted
        config = character.spec.social_media.platforms.get(platform) if character else None
        posted = compose_caption(config.prefix if config else "", text)
        found += [f"{key}: {problem}" for problem in caption_problems(platform, posted)]
    return found


# ---------------------------------------------------------------------------- writing


#: how much of the model's text is read: ten times what any platform shows, so that cleaning
#: (which only shrinks it) and fitting never work on more
_DRAFT_CHARS = 22_000


@dataclass(frozen=True)
class Draft:
    """What the model wrote for one platform, before fitting: clean text, raw hashtags."""

    text: str
    hashtags: tuple[str, ...]


def _is_json(text: str) -> bool:
    try:
        json.loads(text, strict=False)
    except (ValueError, RecursionError):
        return False
    return True


def parse_draft(answer: str) -> Draft:
    """A Draft from a JSON answer, its text cleaned of control characters; raises AnswerError
    when there is no usable text (none, or JSON text in place of a caption)."""
    value = extract_json(answer, "object")
    assert isinstance(value, dict)
    raw_text = next(
        (v for v in (value.get(k) for k in ("text", "caption", "article")) if isinstance(v, str)),
        "",
    )
    text = clean_model_text(raw_text[:_DRAFT_CHARS], multiline=True)
    if not text:
        raise AnswerError("the caption answer has no text")
    if text[0] in "{[" and _is_json(text):
        raise AnswerError(f"the caption's text is JSON, not a caption: {excerpt(text)!r}")
    raw = value.get("hashtags")
    if isinstance(raw, str):
        tags = raw.split()
    elif isinstance(raw, list):
        tags = [tag for tag in raw if isinstance(tag, str)]
    else:
        tags = []
    return Draft(text=text, hashtags=tuple(tags))


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
    """One platform's caption, fitted; raises ModelError when no model answers, or when the
    answer cannot be read `attempts` times (the raw answer is never used as a caption)."""
    system = _SYSTEM.format(guide=_GUIDE[platform], language=language)
    about = character.spec.character.description
    request = "\n".join(
        [
            f"Character: {character.name}" + (f" ({about})" if about else ""),
            f"The idea of the post: {prompt}",
            *(f"Picture {i + 1}: {d}" for i, d in enumerate(descriptions[:4])),
        ]
    )
    social = character.spec.social_media
    config = social.platforms.get(platform)
    prefix = config.prefix if config else ""

    def caption_from(answer: str) -> str:
        draft = parse_draft(answer)
        hashtags = [*social.default_hashtags, *draft.hashtags]
        return fit_caption(draft.text, hashtags, platform=platform, prefix=prefix)

    last: AnswerError | None = None
    for attempt in range(1, attempts + 1):
        answer = await model.complete(system=system, prompt=request, schema=CAPTION_SCHEMA)
        try:
            # X's counter is pure Python: tens of ms on a long text, so never on the loop
            return await off_loop(caption_from, answer)
        except AnswerError as exc:
            log.warning(
                "%s caption answer %d of %d unreadable: %s", platform, attempt, attempts, exc
            )
            last = exc
    raise ModelError(
        f"the {platform} caption answer could not be read after {attempts} tries: {last}",
        user_message=(
            f"The language model's {platform} caption could not be read after {attempts} "
            "tries. The run is kept and can be retried."
        ),
    )


def caption_platforms(character: Character) -> list[Platform]:
    """The platforms a run writes captions for: those the character lists under
    `social_media.platforms`, enabled or not (a reviewer sees the captions of platforms still
    waiting for credentials), in `Platform` order; one model call each."""
    listed = character.spec.social_media.platforms
    return [platform for platform in Platform if platform in listed]


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
