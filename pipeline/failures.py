"""What an error means to a person: the RunFailure a run stores, and the command's exit code.

The one place that maps error classes to the README's exit codes (0 done, 1 bad input: a file,
an argument, a setting; 2 a service failed) and ComfyUI's errors to a user-safe cause (the node,
its class and the message; never a URL or a secret). Imports the error trees of comfy and the
pipeline and the domain records; never bot or discord.
"""

from __future__ import annotations

import re

from comfy import (
    Cancelled,
    ComfyOffline,
    ComfyTimeout,
    DownloadFailed,
    ExecutionFailed,
    PreflightFailed,
    PromptRejected,
    WorkflowError,
)
from pipeline.errors import (
    CharacterError,
    CharacterNotFound,
    ConfigError,
    MediaOverloadError,
    RunError,
    StoreFileError,
)
from pipeline.models import RunFailure, RunState

EXIT_OK, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2

#: errors that a file, a setting or an argument caused: trying again unchanged cannot help
BAD_INPUT: tuple[type[BaseException], ...] = (
    ConfigError,
    CharacterError,
    CharacterNotFound,
    RunError,
    StoreFileError,
)

#: a cause is shown in Discord too: one short paragraph
CAUSE_LIMIT = 600
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def exit_code(exc: BaseException) -> int:
    """The README's exit code for an error that ended a command: bad input is 1, anything
    else (a service, the database, ComfyUI, the network) is 2."""
    if isinstance(exc, BAD_INPUT):
        return EXIT_BAD_INPUT
    if isinstance(exc, (WorkflowError, PromptRejected, PreflightFailed)):
        return EXIT_BAD_INPUT
    return EXIT_SERVICE


def user_sentence(exc: BaseException) -> str:
    """The sentence a person is told for an error that ended a command (never its log text)."""
    if isinstance(exc, MediaOverloadError):
        return exc.user_message
    failure = failure_of(exc, RunState.CREATED)  # no run: only the message and cause count
    return f"{failure.message.rstrip('.')}: {failure.cause}" if failure.cause else failure.message


def failure_of(exc: BaseException, state: RunState) -> RunFailure:
    """The RunFailure a run stores when `exc` stopped it in `state`."""
    if isinstance(exc, MediaOverloadError):
        return RunFailure(
            state=state,
            message=exc.user_message,
            retryable=not isinstance(exc, BAD_INPUT),
            bad_input=isinstance(exc, BAD_INPUT),
        )
    if isinstance(exc, PromptRejected):
        return RunFailure(
            state=state,
            message="ComfyUI refused the workflow",
            cause=_safe("; ".join(exc.lines())),
            retryable=False,
            bad_input=True,
        )
    if isinstance(exc, PreflightFailed):  # str() names the server's URL: the problems do not
        return RunFailure(
            state=state,
            message="ComfyUI cannot run the workflow",
            cause=_safe("; ".join(exc.problems)),
            retryable=False,
            bad_input=True,
        )
    if isinstance(exc, WorkflowError):
        return RunFailure(
            state=state,
            message="The workflow cannot be used",
            cause=_safe(str(exc)),
            retryable=False,
            bad_input=True,
        )
    if isinstance(exc, ExecutionFailed):
        # str() names the node and its class; the exception's message and traceback may hold
        # the server's paths, so only the log has them. Out of memory may pass on a retry (a
        # smaller load); a node refusing its inputs never does.
        memory = "memory" in f"{exc.exception_type} {exc.exception_message}".lower()
        raised = f" and raised {exc.exception_type}" if exc.exception_type else ""
        return RunFailure(
            state=state,
            message="A ComfyUI node failed",
            cause=_safe(f"{exc}{raised}"),
            retryable=memory,
        )
    if isinstance(exc, ComfyOffline):  # its text names the server's URL
        return RunFailure(
            state=state,
            message="No ComfyUI server answered; the run is kept and can be retried.",
        )
    if isinstance(exc, ComfyTimeout):
        return RunFailure(
            state=state,
            message="ComfyUI took too long; the run is kept and can be retried.",
            cause=_safe(exc.reason),
        )
    if isinstance(exc, DownloadFailed):  # its text names the server's URL: the reason does not
        return RunFailure(
            state=state,
            message="ComfyUI's media could not be downloaded; the run is kept and can be retried.",
            cause=_safe(exc.reason),
        )
    if isinstance(exc, Cancelled):
        return RunFailure(
            state=state,
            message="ComfyUI dropped the job; the run is kept and can be retried.",
            cause=_safe(exc.reason),
        )
    return RunFailure(
        state=state, message="ComfyUI could not make the media; the run is kept and can be retried."
    )


def _safe(text: str) -> str:
    """`text` without URLs (they may carry a server's address or a key), one paragraph long."""
    text = " ".join(_URL.sub("<url>", text).split())
    return text if len(text) <= CAUSE_LIMIT else text[: CAUSE_LIMIT - 1] + "\N{HORIZONTAL ELLIPSIS}"
