"""What every provider shares: the task names, one request, and one classified failure.

A provider turns its client library's exceptions into `ProviderFailure` (a kind, an HTTP status,
a Retry-After, a redacted detail for logs); the fallback chain decides what to do with it.
`warm_up` runs one request through a provider on an in-memory transport so that no run's first
call pays the library's first-call cost. Imports only the standard library and `pipeline.ports`
(and anyio, which every client library's transport uses, inside `warm_up`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    #: the most tokens the answer may take (the task's LLM_MAX_TOKENS_*); None: the server's own
    max_tokens: int | None = None


class JsonMode(StrEnum):
    """How a provider asks for JSON when a request has a schema (docs/settings-llm.md).

    `schema`: the server enforces the schema (OpenAI `json_schema`, Ollama `format`, Gemini
    `response_json_schema`); `object-schema`: `json_object` with a `schema` beside it, as
    llama-cpp-python takes; `object`: any JSON (`json_object`, Ollama `format="json"`, Gemini's
    JSON mime type), the schema written into the system prompt; `off`: nothing asked of the
    server, the schema in the prompt; `auto`: the first of the provider's modes its server takes.
    """

    AUTO = "auto"
    SCHEMA = "schema"
    OBJECT_SCHEMA = "object-schema"
    OBJECT = "object"
    OFF = "off"


def schema_instruction(schema: JsonSchema) -> str:
    """The words added to the system prompt when the server does not hold the answer to the
    schema itself (modes `object` and `off`)."""
    return (
        "Answer with one JSON value only, no prose and no code fence, matching this JSON "
        f"schema: {json.dumps(dict(schema), ensure_ascii=False, separators=(',', ':'))}"
    )


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
    #: the answer was cut by its token limit (`finish_reason: length`, `done_reason: length`,
    #: Gemini's MAX_TOKENS): never used as if it were whole
    TRUNCATED = "truncated"
    #: the answer was larger than LLM_MAX_ANSWER_KB; reading stopped at the cap
    TOO_LARGE = "too_large"


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
    FailureKind.TRUNCATED: "stopped at its token limit",
    FailureKind.TOO_LARGE: "answered more than the size limit",
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


#: a 5xx whose message says the request itself is wrong will be refused again (llama.cpp's
#: server answers a `json_schema` it does not take with 500 "1 validation error: ...")
_INVALID_REQUEST = re.compile(
    r"validation (?:error|failed)|invalid (?:request|argument|parameter|value)|input should be",
    re.IGNORECASE,
)


def classify_status(status: int, message: str = "") -> FailureKind:
    """The failure kind of an HTTP error status (and the server's message, for 5xx that say the
    request is invalid: those are refusals, not retried)."""
    if status >= 500 and _INVALID_REQUEST.search(message):
        return FailureKind.REFUSED
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
    """One model service behind its client library; `generate` and `ping` raise only
    ProviderFailure."""

    name: str

    async def generate(self, request: ModelRequest) -> str: ...

    async def ping(self) -> None:
        """Return when the server answers HTTP at all (any status); ProviderFailure when it
        cannot be reached or is silent. Sends no model call."""
        ...

    def json_mode(self, model: str) -> JsonMode:
        """The mode JSON requests to `model` use: the setting, or what `auto` found for it
        (AUTO: not yet)."""
        ...

    async def aclose(self) -> None: ...


#: failures that are answers (HTTP 200): the server took the request as it was sent
_ANSWERED = frozenset(
    {FailureKind.EMPTY, FailureKind.GARBLED, FailureKind.TRUNCATED, FailureKind.TOO_LARGE}
)

#: what `auto` asks in each mode it tries: the smallest JSON request
PROBE_PROMPT = 'Answer {"ok": true}'
PROBE_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


class ModeFinder:
    """A provider's JSON mode per model: the configured one, or for `auto` the first of
    `candidates` the server accepts for that model, found with one small request per mode tried
    and remembered for the process (one server may route models to different backends).

    A mode counts as refused when the probe fails as REFUSED (a 4xx such as 400/422, or a 5xx
    whose message says the request is invalid); any answer, even a cut or garbled one, means the
    server took it. A probe that fails otherwise (unreachable, 401, a timeout) decides nothing:
    its failure is the caller's, and the next JSON request probes again. The last candidate is
    taken without a probe.
    """

    def __init__(self, setting: JsonMode, candidates: Sequence[JsonMode], *, name: str) -> None:
        if setting is not JsonMode.AUTO and setting not in candidates:
            known = ", ".join(m.value for m in (JsonMode.AUTO, *candidates))
            raise ValueError(f"{name} has no JSON mode {setting.value!r} (known: {known})")
        self.name = name
        self.setting = setting
        self._candidates = tuple(candidates)
        self._found: dict[str, JsonMode] = {}
        self._lock = asyncio.Lock()

    def mode(self, model: str) -> JsonMode:
        """The mode JSON requests to `model` use (AUTO: not found yet)."""
        if self.setting is not JsonMode.AUTO:
            return self.setting
        if len(self._candidates) == 1:
            return self._candidates[0]
        return self._found.get(model, JsonMode.AUTO)

    async def send(
        self, request: ModelRequest, send: Callable[[ModelRequest, JsonMode], Awaitable[str]]
    ) -> str:
        """`request` sent by `send` in the mode its model takes: plain text when it asks for no
        JSON, else the configured mode or, for `auto`, the one found by probing with `send`."""
        if request.schema is None:
            return await send(request, JsonMode.OFF)
        probe = ModelRequest(
            model=request.model,
            system="Answer in JSON.",
            prompt=PROBE_PROMPT,
            schema=PROBE_SCHEMA,
            max_tokens=16,
        )
        mode = await self.resolve(request.model, lambda tried: send(probe, tried))
        return await send(request, mode)

    async def resolve(self, model: str, probe: Callable[[JsonMode], Awaitable[object]]) -> JsonMode:
        if (known := self.mode(model)) is not JsonMode.AUTO:
            return known
        async with self._lock:
            if (known := self.mode(model)) is not JsonMode.AUTO:  # found while this call waited
                return known
            found = self._candidates[-1]
            for candidate in self._candidates[:-1]:
                try:
                    await probe(candidate)
                except ProviderFailure as failure:
                    if failure.kind is FailureKind.REFUSED:
                        log.info("%s refused JSON mode %s: %s", self.name, candidate, failure)
                        continue
                    if failure.kind not in _ANSWERED:
                        raise
                found = candidate
                break
            self._found[model] = found
            log.info("%s: JSON mode %s for %s (found by auto)", self.name, found.value, model)
            return found


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
