"""A run's failure as people read it: the step being worked on, the cause, whether a retry helps;
and runs saved before the failure had its cause still read."""

from __future__ import annotations

import json

import pytest

from pipeline.models import Job, Run, RunFailure, RunState


@pytest.mark.parametrize(
    ("state", "doing"),
    [("created", "prompt"), ("prompted", "describe"), ("described", "generate"),
     ("generated", "score"), ("scored", "caption"), ("captioned", "review"),
     ("publishing", "publish")],
    ids=["created", "prompted", "described", "generated", "scored", "captioned", "publishing"],
)  # fmt: skip
def test_a_failure_names_the_step_being_worked_on(state: str, doing: str) -> None:
    """A run that failed while in `described` failed to generate, and says so."""
    failure = RunFailure(state=RunState(state), message="It broke.")
    assert failure.describe() == f"failed at {doing}: It broke."


def test_a_failure_that_a_retry_cannot_mend_says_so_with_its_cause() -> None:
    """The cause follows the message; a failure a retry cannot mend says so."""
    failure = RunFailure(
        state=RunState.DESCRIBED,
        message="ComfyUI refused the workflow",
        cause="node Foo (4): unknown",
        retryable=False,
        bad_input=True,
    )
    assert failure.describe() == (
        "failed at generate: ComfyUI refused the workflow: node Foo (4): unknown. "
        "Retrying will not help until that is fixed."
    )


def test_a_run_saved_before_failures_had_causes_is_still_read() -> None:
    """A stored run whose failure has only a step and a message loads, as a retryable failure
    of a service without detail."""
    run = Run.new(Job("mascot")).advance(
        RunState.FAILED, failure=RunFailure(state=RunState.DESCRIBED, message="ComfyUI failed")
    )
    data = json.loads(run.to_json())
    data["failure"] = {"step": "described", "message": "ComfyUI failed"}
    loaded = Run.from_json(json.dumps(data))
    assert loaded.failure == RunFailure(state=RunState.DESCRIBED, message="ComfyUI failed")
    assert loaded.failure.retryable is True
    assert loaded.failure.bad_input is False
