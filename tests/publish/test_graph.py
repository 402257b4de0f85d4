"""The Graph API's refusals, as Meta sends them, become the publishing kinds a user sees."""

from __future__ import annotations

import json

import pytest
import requests

from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
)
from pipeline.publish.graph import classify_response, count_of, insight_values


def answer(status: int, code: int | None, message: str, **extra: object) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    error: dict[str, object] = {"message": message, "type": "OAuthException", **extra}
    if code is not None:
        error["code"] = code
    response._content = json.dumps({"error": error}).encode()
    return response


@pytest.mark.parametrize(
    ("status", "code", "subcode", "kind"),
    [
        (400, 190, 463, AccountAttentionError),
        (400, 102, None, AccountAttentionError),
        (403, 200, None, AccountAttentionError),
        (400, 10, None, AccountAttentionError),
        (400, 368, 1390008, AccountAttentionError),
        (400, 9, 2207051, AccountAttentionError),
        (400, 4, None, TransientPublishError),
        (400, 17, None, TransientPublishError),
        (400, 32, None, TransientPublishError),
        (400, 613, None, TransientPublishError),
        (400, 80001, None, TransientPublishError),
        (500, 1, None, TransientPublishError),
        (503, 2, None, TransientPublishError),
        (400, 9007, 2207027, TransientPublishError),
        (400, 100, None, ContentRejectedError),
        (400, 36003, 2207009, ContentRejectedError),
        (400, 324, None, ContentRejectedError),
        (400, 9004, 2207052, ContentRejectedError),
    ],
    ids=[
        "expired-token", "session", "permission", "app-permission", "temporarily-blocked",
        "action-blocked", "app-rate", "user-rate", "page-rate", "feature-rate", "business-rate",
        "unknown", "unavailable", "media-not-ready", "invalid-parameter", "aspect-ratio",
        "invalid-image", "media-download-failed",
    ],
)  # fmt: skip
def test_each_graph_error_code_has_its_kind(
    status: int, code: int, subcode: int | None, kind: type[Exception]
) -> None:
    """Token and block codes pause the account, rate and unknown codes retry, the rest refuse."""
    extra = {"error_subcode": subcode} if subcode else {}
    error = classify_response(
        answer(status, code, "said", **extra), service="Facebook", step="post", is_post=True
    )
    assert type(error) is kind


def test_only_an_unknown_error_on_the_post_may_have_posted() -> None:
    """An unknown error (1) on the post call may have gone through; a rate limit did not."""
    unknown = classify_response(answer(500, 1, "x"), service="Threads", step="post", is_post=True)
    limited = classify_response(answer(400, 4, "x"), service="Threads", step="post", is_post=True)
    assert isinstance(unknown, TransientPublishError)
    assert isinstance(limited, TransientPublishError)
    assert (unknown.maybe_posted, limited.maybe_posted) == (True, False)


def test_a_refusal_is_shown_without_links_or_tokens() -> None:
    """Meta's message reaches the user scrubbed of URLs and tokens, with its code."""
    error = classify_response(
        answer(400, 100, "Bad url https://cdn.example/x.jpg?token=abc access_token=EAAB123"),
        service="Instagram",
        step="image",
        is_post=False,
    )
    assert isinstance(error, ContentRejectedError)
    assert "EAAB123" not in str(error)
    assert "cdn.example" not in error.user_message
    assert "(code 100)" in str(error)


def test_counts_and_insights_are_read_in_their_graph_shapes() -> None:
    """Edge summaries, plain counts and insights values are read; odd shapes are None."""
    assert count_of({"data": [], "summary": {"total_count": 12}}) == 12
    assert count_of(5) == 5
    assert count_of({"count": 3}) == 3
    assert count_of(True) is None
    assert count_of("7") is None
    assert insight_values(
        {"data": [
            {"name": "views", "values": [{"value": 120}]},
            {"name": "likes", "total_value": {"value": 9}},
            {"name": "odd", "values": [{"value": "x"}]},
        ]}
    ) == {"views": 120, "likes": 9}  # fmt: skip
