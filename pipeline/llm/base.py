"""What every provider shares: the task names, one request, and one classified failure.

A provider turns its client library's exceptions into `ProviderFailure` (a kind, an HTTP status,
a Retry-After, a redacted detail for logs); the fallback chain decides what to do with it.
`warm_up` runs one request through a provider on an in-memory transport so that no run's first
call pays the library's first-call cost. Imports only the standard library and `pipeline.ports`
(and anyio, which every client library's transport uses, inside `warm_up`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pipeline.ports import ImageData, JsonSchema

log = logging.getLogger(__name__)


class Task(StrEnum):
    """What a model is used for; each task has its own model name and provider order."""

    PROMPT = "prompt"
    DESCRIPTION = "description"
    VISION = "vision"
    CAPTION = "caption"


@dataclass(frozen=True)
class ModelRequest:
    """One call to one provider: which model, the messages, images and an optional schema."""

    model: str
    system: str
    prompt: str
    images: Sequence[ImageData] = ()
    schema: JsonSchema | None = None


class FailureKind(StrEnum):
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    EMPTY = "empty"
    #: JSON was asked for (a schema) and the answer holds none
    GARBLED = "garbled"


#: the kinds worth trying again on the same provider (after a backoff)
RETRYABLE = frozenset({FailureKind.TIMEOUT, FailureKind.RATE_LIMITED, FailureKind.SERVER_ERROR})

#: how each kind reads in a user-facing message: our own words, never the server's
_PHRASES = {
    FailureKind.TIMEOUT: "timed out",
    FailureKind.RATE_LIMITED: "was rate-limited",
    FailureKind.SERVER_ERROR: "had a server error",
    FailureKind.UNREACHABLE: "could not be reached",
    FailureKind.REFUSED: "refused the request",
    FailureKind.UNAUTHORIZED: "refused the credentials",
    FailureKind.NOT_FOUND: "does not know the model",
    FailureKind.EMPTY: "answered with nothing",
    FailureKind.GARBLED: "answered without the JSON asked for",
}


class ProviderFailure(Exception):
    """One failed call to one provider, classified; `detail` is redacted and only for logs."""

    def __init__(
        self,
        kind: FailureKind,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.detail = detail
        super().__init__(self.log_text)

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    @property
    def phrase(self) -> str:
        """A user-safe phrase: what happened, with the HTTP status when there was one."""
        text = _PHRASES[self.kind]
        return f"{text} (HTTP {self.status})" if self.status is not None else text

    @property
    def log_text(self) -> str:
        return f"{self.phrase}: {self.detail}" if self.detail else self.phrase


def classify_status(status: int) -> FailureKind:
    """The failure kind of an HTTP error status."""
    if status == 429:
        return FailureKind.RATE_LIMITED
    if status == 408:
        return FailureKind.TIMEOUT
    if status in (401, 403):
        return FailureKind.UNAUTHORIZED
    if status == 404:
        return FailureKind.NOT_FOUND
    if status >= 500:
        return FailureKind.SERVER_ERROR
    return FailureKind.REFUSED


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds form; an HTTP date counts as unknown)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


_KEY_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-*.]{4,}|AIza[0-9A-Za-z_\-]{8,}|Bearer\s+\S+)")


def redact(text: str, secrets: Iterable[str] = (), *, limit: int = 300) -> str:
    """`text` without anything that looks like a key (or is one of `secrets`), shortened."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _KEY_PATTERN.sub("[redacted]", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Provider(Protocol):
    """One model service behind its client library; `generate` raises only ProviderFailure."""

    name: str

    async def generate(self, request: ModelRequest) -> str: ...

    async def aclose(self) -> None: ...


#: what a warm-up asks: a vision call with a JSON schema builds every type the real calls use
WARM_UP_REQUEST = ModelRequest(
    model="warm-up",
    system="warm-up",
    prompt="warm-up",
    images=(ImageData(b"warm-up", "image/jpeg"),),
    schema={"type": "object"},
)


def _not_the_warm_up(record: logging.LogRecord) -> bool:
    """Drops the warm-up's request line, unless that library logs at DEBUG."""
    debugging = logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
    return debugging or "warm-up.invalid" not in record.getMessage()


def warm_up(library: str, build: Callable[[], Provider]) -> None:
    """`WARM_UP_REQUEST` through the provider `build` makes (on an in-memory transport), in an
    event loop of its own: blocking, so call it in a thread, once per process.

    A client library's first request imports anyio's asyncio backend (which httpx's connection
    pool asks for) and builds the library's request and response types, holding the event loop
    for 50-150 ms (benchmarks/first_call.py); done here, no run's first call pays it. Nothing
    leaves the process, and a failure only costs that first call the time.
    """

    async def once() -> None:
        import anyio.lowlevel

        await anyio.lowlevel.checkpoint()  # imports the backend the real transports use
        provider = build()
        try:
            await provider.generate(WARM_UP_REQUEST)
        finally:
            await provider.aclose()

    for name in ("httpx", "httpx2"):  # their INFO line about the warm-up is noise at start
        logging.getLogger(name).addFilter(_not_the_warm_up)
    try:
        asyncio.run(once())
    except Exception:  # an optimisation: the real call works without it
        log.warning("the %s client's warm-up failed", library, exc_info=True)
