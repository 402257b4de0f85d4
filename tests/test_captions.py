"""Captions: hashtags merged and deduplicated, and text fitted to Instagram and X limits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.captions import (
    ELLIPSIS,
    count_hashtags,
    edited_caption_problems,
    fit_caption,
    merge_hashtags,
    normalize_hashtag,
    weighted_length,
    write_captions,
)
from pipeline.characters import Character, Characters
from pipeline.errors import ModelError
from pipeline.llm.base import Task
from pipeline.models import Platform
from pipeline.prompts.library import TemplateLibrary
from pipeline.wiring import ModelCaptions
from tests.doubles import Asked, ScriptedModel

ROOT = Path(__file__).resolve().parents[1]
IG, X = Platform.INSTAGRAM, Platform.TWITTER

SENTENCE = "The little fox walked along the frozen river and counted every star above the hills."
LONG = " ".join([SENTENCE] * 40)  # about 3,400 characters
CJK = "小さな狐は凍った川に沿って歩き、丘の上の星をひとつずつ数えました。" * 12
TAGS = ["#fox", "#aiart", "#winter", "#stars", "#river"]


def body_and_tags(caption: str) -> tuple[str, list[str]]:
    head, _, tail = caption.rpartition("\n\n")
    if not head:
        return caption, []
    return head, tail.split()


def words_are_whole(result: str, original: str) -> bool:
    words = set(original.split())
    kept = result.removesuffix(ELLIPSIS).split()
    return all(word in words for word in kept[:-1]) and (
        not kept or any(w.startswith(kept[-1]) and w == kept[-1] for w in words)
    )


# ---------------------------------------------------------------------------- hashtags


def test_hashtags_deduplicated_ignoring_case() -> None:
    """A hashtag appears once however the model capitalised it; defaults come first."""
    merged = merge_hashtags(["#Fox", "#aiart"], ["fox", "#FOX", "#Snow", "snow", "#AIArt"])
    assert merged == ["#Fox", "#aiart", "#Snow"]


def test_hashtags_already_in_text_are_not_repeated() -> None:
    """A hashtag the text already uses is not added again at the end."""
    assert merge_hashtags(["#fox", "#snow"], text="A walk in the #Snow today") == ["#fox"]


@pytest.mark.parametrize(
    ("raw", "tag"),
    [("fox", "#fox"), ("#Fox!", "#Fox"), ("##snow day", "#snowday"), ("東京", "#東京"),
     ("\uff03東京", "#東京"), ("#2025", None), ("  ", None), ("#" + "snow" * 100, None)],
    ids=["bare", "punctuation", "spaces", "cjk", "fullwidth-hash", "digits", "blank", "endless"],
)  # fmt: skip
def test_hashtags_are_normalised(raw: str, tag: str | None) -> None:
    """Hashtags written any way become one clean #word, or are dropped when not a hashtag."""
    assert normalize_hashtag(raw) == tag


# ---------------------------------------------------------------------------- Instagram


def test_instagram_short_caption_is_kept_whole() -> None:
    """A short caption keeps its text, prefix and every hashtag."""
    caption = fit_caption("Hello from the river.", TAGS, platform=IG, prefix="[Fox]")
    assert caption == "[Fox] Hello from the river.\n\n" + " ".join(TAGS)


def test_instagram_long_text_is_cut_at_a_sentence() -> None:
    """A long article fits 2,200 characters, ends at a full sentence and keeps the hashtags."""
    caption = fit_caption(LONG, TAGS, platform=IG)
    body, tags = body_and_tags(caption)
    assert len(caption) <= 2200
    assert body.endswith("hills.")
    assert LONG.startswith(body)
    assert tags == TAGS


def test_instagram_keeps_at_most_30_hashtags() -> None:
    """Forty hashtags become the first thirty."""
    many = [f"#tag{i}" for i in range(40)]
    _, tags = body_and_tags(fit_caption("A fox.", many, platform=IG))
    assert tags == many[:30]


def test_instagram_cjk_text_fits() -> None:
    """A long Japanese caption fits 2,200 characters and ends at a sentence."""
    text = CJK * 10
    caption = fit_caption(text, TAGS, platform=IG)
    body, _ = body_and_tags(caption)
    assert len(caption) <= 2200
    assert text.startswith(body)
    assert body.endswith("。")


# ---------------------------------------------------------------------------- X


def test_x_long_text_fits_280_weighted() -> None:
    """A long English caption fits X's 280 and no word is cut in half."""
    caption = fit_caption(LONG, TAGS[:2], platform=X)
    body, tags = body_and_tags(caption)
    assert weighted_length(caption) <= 280
    assert LONG.startswith(body.removesuffix(ELLIPSIS))
    assert words_are_whole(body, LONG)
    assert tags == TAGS[:2]


def test_x_drops_hashtags_from_the_end() -> None:
    """With many long hashtags, the last ones go so the text still has room."""
    many = [f"#averyveryverylonghashtagnumber{i}" for i in range(12)]
    caption = fit_caption(SENTENCE * 2, many, platform=X)
    body, tags = body_and_tags(caption)
    assert weighted_length(caption) <= 280
    assert tags == many[: len(tags)]
    assert 0 < len(tags) < len(many)
    assert len(body) > 60  # room for the text was kept (about 80, cut at a word)


def test_x_cjk_counts_double_and_cuts_between_characters() -> None:
    """Japanese text counts two per character on X and is cut between characters."""
    caption = fit_caption(CJK, ["#狐"], platform=X)
    body, tags = body_and_tags(caption)
    assert weighted_length(caption) <= 280
    assert weighted_length(caption) > 200  # the room is used, not wasted
    assert CJK.startswith(body.removesuffix(ELLIPSIS))
    assert tags == ["#狐"]


def test_x_url_counts_as_23_and_stays_whole() -> None:
    """A long link counts as 23 and is kept whole or not at all."""
    url = "https://example.com/" + "a" * 120
    text = f"Read the whole story of the fox: {url} and more words follow here. " * 6
    caption = fit_caption(text, [], platform=X)
    assert weighted_length(caption) <= 280
    for word in caption.split():
        if word.startswith("http"):
            assert word == url


def test_x_hashtag_in_text_is_never_cut() -> None:
    """A hashtag inside the text is kept whole or dropped whole."""
    text = ("Winter walks " + "#" + "Snowy" * 10 + " ") * 12
    caption = fit_caption(text, [], platform=X)
    assert weighted_length(caption) <= 280
    for word in caption.removesuffix(ELLIPSIS).split():
        if word.startswith("#"):
            assert word == "#" + "Snowy" * 10


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(["fox", "river", "星", "東京の夜", "https://x.com/a/b", "#tag", "ok."]),
        min_size=1,
        max_size=120,
    )
)
def test_x_any_text_fits(words: list[str]) -> None:
    """Whatever the words, the X caption fits and is made of whole words."""
    text = " ".join(words)
    caption = fit_caption(text, ["#fox"], platform=X)
    assert weighted_length(caption) <= 280
    body, _ = body_and_tags(caption)
    for token in body.removesuffix(ELLIPSIS).split():
        # only CJK may be cut inside; a text of hashtags only becomes the hashtag line
        assert token in [*words, "#fox"] or "東京の夜".startswith(token)


# ---------------------------------------------------------------------------- writing


FOX_YAML = """
character: {name: Fox, description: a small orange fox}
generation:
  generation_type_weights: {text2img: 1}
  workflows: {text2img: workflows/text2img.json}
social_media:
  default_hashtags: ["#fox", "#aiart"]
  platforms:
    instagram: {enabled: true, credentials: ig, prefix: "🦊"}
    twitter: {enabled: true, credentials: x}
"""


@pytest.fixture
def fox() -> Character:
    return Characters(ROOT / "characters", TemplateLibrary.load(), root=ROOT).parse(
        FOX_YAML, path=ROOT / "characters" / "fox.yaml"
    )


def per_platform(asked: Asked) -> str:
    if "Instagram" in asked.system:
        return json.dumps({"text": "A long walk by the river.", "hashtags": ["#Fox", "#river"]})
    return json.dumps({"text": "Stars tonight!", "hashtags": ["#stars"]})


async def test_captions_for_each_enabled_platform(fox: Character) -> None:
    """Each enabled platform gets its own caption with prefix, defaults and new hashtags."""
    model = ScriptedModel.of(default=per_platform)
    captions = await write_captions(
        character=fox, prompt="Fox walks by a river", descriptions=["fox, river"], model=model
    )
    assert captions == {
        IG: "🦊 A long walk by the river.\n\n#fox #aiart #river",
        X: "Stars tonight!\n\n#fox #aiart #stars",
    }


@dataclass
class OneModel:
    """LanguageModels' one call a caption step makes: the model for a task."""

    model: ScriptedModel

    def for_task(self, task: Task) -> ScriptedModel:
        assert task is Task.CAPTION
        return self.model


async def test_a_run_writes_captions_for_the_listed_platforms_only() -> None:
    """A run's caption step writes one caption per platform the character lists, enabled or
    not, and asks the model nothing for a platform it does not list (Bluesky, Facebook)."""
    listed = Characters(ROOT / "characters", TemplateLibrary.load(), root=ROOT).parse(
        FOX_YAML.replace("twitter: {enabled: true, credentials: x}", "twitter: {enabled: false}"),
        path=ROOT / "characters" / "fox.yaml",
    )
    model = ScriptedModel.of(default=per_platform)
    step = ModelCaptions(OneModel(model))  # type: ignore[arg-type]

    captions = await step.write(listed, prompt="p", descriptions=[], subject="fox")

    assert set(captions) == {IG, X}
    assert len(model.calls) == 2
    assert not any("Bluesky" in c.system or "Facebook" in c.system for c in model.calls)


async def test_hashtags_ending_the_text_join_the_hashtag_line(fox: Character) -> None:
    """Hashtags the model put at the end of its text go to the hashtag line, deduplicated."""
    answer = json.dumps({"text": "Stars over the river tonight. #Stars #fox", "hashtags": []})
    model = ScriptedModel.of(default=answer)
    captions = await write_captions(
        character=fox, prompt="p", descriptions=[], model=model, platforms=[X]
    )
    assert captions[X] == "Stars over the river tonight.\n\n#fox #aiart #Stars"


async def test_long_model_caption_is_fitted(fox: Character) -> None:
    """A caption the model wrote too long is fitted to X."""
    model = ScriptedModel.of(default=json.dumps({"text": LONG, "hashtags": TAGS}))
    captions: dict[Platform, str] = await write_captions(
        character=fox, prompt="p", descriptions=[], model=model, platforms=[X]
    )
    assert weighted_length(captions[X]) <= 280


async def test_a_caption_no_model_answers_fails_with_the_models_message(fox: Character) -> None:
    """When no model writes one platform's caption, the run fails with the model error's
    user-safe sentence (a retryable step), not as an unexpected error."""
    unavailable = ModelError("every provider failed", user_message="No language model answered.")

    def answer(asked: Asked) -> str:
        if "Instagram" in asked.system:
            raise unavailable
        return json.dumps({"text": "Stars tonight!", "hashtags": []})

    model = ScriptedModel.of(default=answer)
    with pytest.raises(ModelError) as raised:
        await write_captions(character=fox, prompt="p", descriptions=[], model=model)
    assert raised.value.user_message == "No language model answered."


# ---------------------------------------------------------------------------- the whole caption

INLINE = " ".join(f"word{i} #inline{i}" for i in range(40)) + " and more."


@pytest.mark.parametrize(
    ("text", "tags", "prefix", "inline", "appended"),
    [
        (INLINE, TAGS, "", 30, []),
        (" ".join(f"#inline{i} fox" for i in range(25)), TAGS, "", 25, TAGS),
        ("A #one and a #two.", [f"#tag{i}" for i in range(40)], "#fox #daily", 2, None),
        ("A fox in the snow. " + " ".join(f"#t{i}" for i in range(275)), [], "", 0, None),
    ],
    ids=["forty-in-text", "twenty-five-in-text", "prefix-tags", "trailing-275"],
)
def test_instagram_counts_every_hashtag_in_the_caption(
    text: str, tags: list[str], prefix: str, inline: int, appended: list[str] | None
) -> None:
    """Instagram's 30 hashtags count those in the text and prefix too: a caption never holds
    more, the text keeps its words, and the hashtag line takes what is left."""
    caption = fit_caption(text, tags, platform=IG, prefix=prefix)
    assert count_hashtags(caption) == 30
    assert len(caption) <= 2200
    body, line = body_and_tags(caption)
    assert count_hashtags(body) - count_hashtags(prefix) == inline
    if appended is not None:
        assert line[: len(appended)] == appended


def test_hashtags_past_the_limit_in_the_text_keep_their_words() -> None:
    """Hashtags past the thirtieth in the text lose only their '#': the sentence still reads."""
    caption = fit_caption(INLINE, [], platform=IG)
    assert caption.startswith("word0 #inline0 word1 #inline1")
    assert caption.endswith("word39 inline39 and more.")


def test_x_counts_hashtags_in_the_text() -> None:
    """X's weighted length counts the whole caption, hashtags written in the text included."""
    text = " ".join(f"#averyveryverylonghashtag{i}" for i in range(30)) + " and a fox."
    caption = fit_caption("A fox. " + text, TAGS, platform=X)
    assert weighted_length(caption) <= 280


MB_PROSE = SENTENCE * (1_000_000 // len(SENTENCE))
HOSTILE_CAPTIONS = [
    (MB_PROSE, TAGS),
    (
        " ".join(f"fox{i} #tag{i}" for i in range(500)) + " " + MB_PROSE,
        [f"#t{i}" for i in range(500)],
    ),
    ("Hi. " + " ".join(f"#tag{i}" for i in range(100_000)), []),
    ("狐" * 1_000_000, TAGS),
    ("a" * 1_000_000, TAGS),
    ("https://example.com/" + "a" * 1_000_000, TAGS),
    ("A fox. ", [f"#tag{i}" for i in range(100_000)]),
]
HOSTILE_IDS = ["prose", "500-hashtags", "100k-trailing", "cjk", "one-word", "long-url", "100k-list"]


@pytest.mark.parametrize("platform", [IG, X], ids=["instagram", "x"])
@pytest.mark.parametrize(("text", "tags"), HOSTILE_CAPTIONS, ids=HOSTILE_IDS)
def test_a_megabyte_caption_is_fitted(text: str, tags: list[str], platform: Platform) -> None:
    """A 1 MB answer becomes a caption within the platform's limits, cut at a word, without
    holding the run (the issue saw 386 s)."""
    caption = fit_caption(text, tags, platform=platform, prefix="🦊")
    if platform is IG:
        assert len(caption) <= 2200
        assert count_hashtags(caption) <= 30
    else:
        assert weighted_length(caption) <= 280
    assert caption.startswith("🦊")
    assert "a" * 3000 not in caption  # a word longer than the platform allows is never cut in


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["fox", "#fox", "#Snow", "##deep", "\uff03wide", "ok.", "#1", "雪", "\n"]),
        max_size=200,
    ),
    st.lists(st.sampled_from(["#a", "b", "#c", "#fox", "#d1"]), max_size=40),
)
def test_instagram_any_caption_keeps_the_limits(words: list[str], tags: list[str]) -> None:
    """Whatever mix of hashtags the text and list hold, the caption has at most 30 hashtags
    and 2,200 characters."""
    caption = fit_caption(" ".join(words), tags, platform=IG, prefix="#fox")
    assert count_hashtags(caption) <= 30
    assert len(caption) <= 2200


@pytest.mark.parametrize(
    "answer",
    [
        "Stars over the river tonight. #Stars #fox",
        '{"text": "Stars" "oops", "hashtags": ["#stars", "#fox"]}',
        '["#stars", "#fox"]',
        json.dumps({"text": json.dumps({"text": "Stars", "hashtags": ["#stars"]})}),
        json.dumps({"text": "\x00\x1b ", "hashtags": ["#stars"]}),
        "[" * 100_000,
    ],
    ids=["prose", "list-after-bad-string", "list", "json-in-text", "only-control", "deep"],
)
async def test_an_unreadable_caption_is_never_published(fox: Character, answer: str) -> None:
    """An answer asked for as JSON that cannot be read fails the step (the run can be retried):
    neither the raw answer nor JSON text ever becomes the caption."""
    model = ScriptedModel.of(default=answer)
    with pytest.raises(ModelError) as raised:
        await write_captions(character=fox, prompt="p", descriptions=[], model=model, platforms=[X])
    assert "could not be read after 2 tries" in raised.value.user_message
    assert "{" not in raised.value.user_message
    assert len(model.calls) == 2


async def test_caption_text_is_cleaned_of_control_characters(fox: Character) -> None:
    """NUL, ESC colour codes and stray tabs in the model's text never reach the post; its
    paragraphs stay."""
    text = "\x1b[31mA fox\x00 by\tthe river.\x1b[0m\r\n\r\n\r\nStars\u202e tonight."
    answer = json.dumps({"text": text, "hashtags": ["#sn\x00ow", 5, None]})
    model = ScriptedModel.of(default=answer)
    captions = await write_captions(
        character=fox, prompt="p", descriptions=[], model=model, platforms=[IG]
    )
    assert captions[IG] == "🦊 A fox by the river.\n\nStars tonight.\n\n#fox #aiart #snow"


async def test_hashtags_of_any_type_do_not_break_the_caption(fox: Character) -> None:
    """A model that sends hashtags as a number or an object still gets a caption."""
    model = ScriptedModel.of(default=json.dumps({"text": "Stars tonight!", "hashtags": 5}))
    captions = await write_captions(
        character=fox, prompt="p", descriptions=[], model=model, platforms=[X]
    )
    assert captions[X] == "Stars tonight!\n\n#fox #aiart"


async def test_a_megabyte_answer_is_captioned(fox: Character) -> None:
    """A 1 MB caption answer with 500 hashtags becomes a caption within both platforms' limits."""
    text = " ".join(f"fox{i} #tag{i}" for i in range(500)) + " " + MB_PROSE
    answer = json.dumps({"text": text, "hashtags": [f"#t{i}" for i in range(500)]})
    model = ScriptedModel.of(default=answer)
    captions = await write_captions(character=fox, prompt="p", descriptions=[], model=model)
    assert count_hashtags(captions[IG]) <= 30
    assert len(captions[IG]) <= 2200
    assert weighted_length(captions[X]) <= 280


# ---------------------------------------------------------------------------- a person's edit


@pytest.mark.parametrize(
    ("captions", "problems"),
    [
        ({"instagram": "A walk. #fox", "twitter": "Hi #fox"}, []),
        (
            {"instagram": "a" * 2199},
            ["instagram: the caption is 2201 of Instagram's 2200 characters"],
        ),
        (
            {"instagram": " ".join(f"#tag{i}" for i in range(31))},
            ["instagram: the caption has 31 hashtags, and Instagram takes 30"],
        ),
        ({"twitter": "狐" * 141}, ["twitter: the post is 282 of X's 280 characters"]),
        (
            {"twitter": "a" * 250 + " #fox #aiart #winter #stars #river #snow"},
            ["twitter: the post is 290 of X's 280 characters"],
        ),
        ({"tiktok": "a" * 5000}, []),
    ],
    ids=[
        "fits",
        "prefix-counts",
        "hashtags-in-text",
        "x-weighted",
        "x-hashtags-count",
        "no-platform",
    ],
)
def test_an_edited_caption_is_checked_whole_as_posted(
    fox: Character, captions: dict[str, str], problems: list[str]
) -> None:
    """A person's caption is measured as it would be posted: the prefix and every hashtag in
    the text count, X by weight; each problem names the platform."""
    assert edited_caption_problems(fox, captions) == problems


def test_an_edited_caption_of_a_character_that_is_gone_is_checked_without_prefix() -> None:
    """With the character file gone, the caption alone is measured."""
    assert edited_caption_problems(None, {"instagram": "a" * 2199}) == []
