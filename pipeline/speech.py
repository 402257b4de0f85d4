"""The voice of narrated videos: an OpenAI-compatible `/audio/speech` endpoint.

`OpenAISpeaker` asks the `openai` client's `audio.speech.create` for WAV, with a deadline and a
cap on the answer's size (`pipeline.llm.capped`), and writes the audio with the suffix of the
format that came (local servers may send another). Its errors are ServiceErrors with a user-safe
sentence; the key never reaches a message. Imported by the wiring only (the client is heavy).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx2
import openai

from pipeline.errors import ServiceError
from pipeline.llm.base import redact
from pipeline.llm.capped import AnswerTooLarge, capped_hooks2

#: the first bytes of the audio formats a speech endpoint sends, and their suffixes
_AUDIO_MAGIC = (
    (b"RIFF", ".wav"),
    (b"ID3", ".mp3"),
    (b"\xff\xfb", ".mp3"),
    (b"\xff\xf3", ".mp3"),
    (b"\xff\xf2", ".mp3"),
    (b"OggS", ".ogg"),
    (b"fLaC", ".flac"),
)


def audio_suffix(data: bytes) -> str | None:
    """The suffix of the audio format `data` is in, by its first bytes (None: not audio)."""
    for magic, suffix in _AUDIO_MAGIC:
        if data.startswith(magic):
            return suffix
    return None


def _write(stem: Path, suffix: str, data: bytes) -> Path:
    dest = stem.with_suffix(suffix)
    partial = dest.with_name(dest.name + ".part")
    try:
        partial.write_bytes(data)
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


@dataclass(frozen=True)
class SpeechEndpoint:
    """One OpenAI-compatible speech endpoint: its client (closed by `close`) and limits."""

    client: openai.AsyncOpenAI
    base_url: str
    model: str
    timeout_s: float
    #: what never reaches a message (the key)
    secrets: tuple[str, ...]

    async def close(self) -> None:
        await self.client.close()


class OpenAISpeaker:
    """Speech from an OpenAI-compatible `/audio/speech` endpoint (OpenAI, or a local server
    that speaks the same API) in one voice, as WAV, within the endpoint's deadline and cap."""

    def __init__(self, endpoint: SpeechEndpoint, voice: str) -> None:
        self.endpoint = endpoint
        self.voice = voice

    @classmethod
    def connect(
        cls,
        base_url: str,
        api_key: str,
        *,
        model: str,
        voice: str,
        timeout_s: float = 120.0,
        max_bytes: int = 32 * 2**20,
    ) -> OpenAISpeaker:
        """A speaker on a new client for `base_url`; `close` it when done."""
        ask_identity, cap = capped_hooks2(max_bytes)
        client = openai.AsyncOpenAI(
            api_key=api_key or "none",  # local servers take any key; the client wants one
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(
                event_hooks={"request": [ask_identity], "response": [cap]}
            ),
        )
        return cls(SpeechEndpoint(client, base_url, model, timeout_s, (api_key,)), voice)

    def with_voice(self, voice: str) -> OpenAISpeaker:
        """This speaker in another voice (a character's own), on the same client."""
        return OpenAISpeaker(self.endpoint, voice)

    async def speak(self, text: str, stem: Path) -> Path:
        end = self.endpoint
        where = f"the speech endpoint {end.base_url}"
        try:
            async with asyncio.timeout(end.timeout_s):
                answer = await end.client.audio.speech.create(
                    model=end.model, voice=self.voice, input=text, response_format="wav"
                )
                data = answer.content
        except (TimeoutError, openai.APITimeoutError):
            raise _speech_error(f"{where} did not answer within {end.timeout_s:g} s") from None
        except openai.APIStatusError as exc:
            said = redact(_said(exc.body) or exc.message, end.secrets)
            raise _speech_error(
                f"{where} answered HTTP {exc.status_code}: {said}", status=exc.status_code
            ) from None
        except AnswerTooLarge as exc:
            raise _speech_error(f"{where}: {exc}") from None
        except (openai.APIConnectionError, httpx2.HTTPError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, AnswerTooLarge) else None
            detail = str(cause) if cause else f"cannot be reached ({type(exc).__name__})"
            raise _speech_error(f"{where}: {detail}") from None
        suffix = audio_suffix(data)
        if suffix is None:
            raise _speech_error(f"{where} answered with {len(data)} bytes that are not audio")
        return await asyncio.to_thread(_write, stem, suffix, data)

    async def close(self) -> None:
        """Close the client (every speaker made by `with_voice` shares it)."""
        await self.endpoint.close()


def _said(body: object) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return ""


def _speech_error(text: str, *, status: int | None = None) -> ServiceError:
    why = f" (HTTP {status})" if status else ""
    hint = " Check SPEECH_API_KEY." if status in (401, 403) else ""
    return ServiceError(
        text,
        user_message=(
            f"The speech endpoint could not speak the narration{why}; "
            f"the run is kept and can be retried.{hint}"
        ),
    )
