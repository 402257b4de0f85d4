"""Captions: hashtags merged and deduplicated, and text fitted to Instagram and X limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.captions import (
    ELLIPSIS,
    fit_caption,
    merge_hashtags,
    normalize_hashtag,
    weighted_length,
    write_captions,
)
from pipeline.characters import Character, Characters
from pipeline.errors import ModelError
from pipeline.models import Platform
from pipeline.prompts.library import TemplateLibrary
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
     ("\uff03東京", "#東京"), ("#2025", None), ("  ", None)],
    ids=["bare", "punctuation", "spaces", "cjk", "fullwidth-hash", "digits", "blank"],
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


@pytest.fixture
def fox() -> Character:
    text = """
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
    return Characters(ROOT / "characters", TemplateLibrary.load(), root=ROOT).parse(
        text, path=ROOT / "characters" / "fox.yaml"
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
