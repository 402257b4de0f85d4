"""Logging set-up for the entry points, with the run id in every record of a run.

`run_context(run_id)` marks the current task's records; `configure` installs the format.
Imports only the standard library.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

#: libraries whose DEBUG records carry credentials, so they never log below INFO: discord.py's
#: webhook requests (the URL holds the webhook's token), oauthlib and requests-oauthlib (the
#: OAuth parameters of every X request, the access token among them), instagrapi (the body of
#: every answer, and a Bloks two-factor login embeds the new session in its answer)
#: botocore logs its signed requests (and presigned URLs, which open a file for a day) at DEBUG
SECRET_LOGGERS = ("discord.webhook", "oauthlib", "requests_oauthlib", "instagrapi", "botocore")
#: libraries that log every operation at DEBUG, so they never log below INFO either: aiosqlite
#: writes two records per SQL statement, with its parameters (whole runs as JSON), from its own
#: thread; at LOG_LEVEL=DEBUG they would bury the bot's records
CHATTY_LOGGERS = ("aiosqlite",)
#: the loggers `configure` keeps at INFO or above, whatever LOG_LEVEL says
AT_LEAST_INFO = (*SECRET_LOGGERS, *CHATTY_LOGGERS)

run_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("run_id", default="-")


class RunIdFilter(logging.Filter):
    """Adds `run_id` to every record: the id of the run the current task works on, or '-'."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = run_id_var.get()
        return True


@contextmanager
def run_context(run_id: str) -> Iterator[None]:
    token = run_id_var.set(run_id)
    try:
        yield
    finally:
        run_id_var.reset(token)


class ShortReconnects(logging.Filter):
    """discord.py logs every gateway reconnect with a whole traceback (`Client.connect`:
    "Attempting a reconnect in N s"); the error's class and text on the same line say as much."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        reconnect = str(record.msg).startswith("Attempting a reconnect")
        if exc is not None and record.name == "discord.client" and reconnect:
            text = " ".join(str(exc).split())[:200]
            record.msg = (
                f"{record.getMessage()} ({type(exc).__name__}{': ' + text if text else ''})"
            )
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to `sys.stderr` as it is then, so a caller that swaps the stream
    (pytest's capture, a tool calling `main()` twice) never leaves us on a closed one."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(level: str = "INFO") -> None:
    handler = StderrHandler()
    handler.addFilter(RunIdFilter())
    handler.addFilter(ShortReconnects())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [run %(run_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # discord.py and aiohttp are chatty at INFO about things a user does not act on
    logging.getLogger("discord.gateway").setLevel(max(logging.WARNING, root.level))
    # "logging in using static token" at every try to reach Discord: one line per try is ours
    quiet = root.level if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
    logging.getLogger("discord.client").setLevel(quiet)
    for name in AT_LEAST_INFO:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
