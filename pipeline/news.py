"""Reading a news file for `db import-news`: CSV (header title, keyword, content, publish_date)
or a JSON list of objects, bounded in size, rows, field length and nesting.

Every problem is a `Problem` naming the file, the line (CSV) or index (JSON) and the field,
raised together as one CharacterError (bad input, exit 1); nothing is written before the whole
file reads cleanly. Encodings: a byte-order mark (UTF-8, UTF-16, UTF-32) is followed, otherwise
the file must be UTF-8; other encodings (latin-1, Windows-1252, ...) are refused with a sentence
saying so rather than guessed, since a wrong guess would store garbled text without a word.
Imports only the error tree and the ports.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import CharacterError, Problem
from pipeline.ports import NewsItem

#: the largest news file read; its whole text is held while it is checked
MAX_FILE_BYTES = 16 * 1024 * 1024
#: the most rows one import takes (one transaction); more: split the file
MAX_ROWS = 100_000
#: problems listed before the rest are counted, so a wrong file prints a screen, not a flood
MAX_PROBLEMS = 20
#: the `news` table's columns: VARCHAR(512), VARCHAR(255) (characters), TEXT (65,535 bytes)
TITLE_CHARS, KEYWORD_CHARS, CONTENT_BYTES = 512, 255, 65_535

_BOMS = (  # UTF-32's marks first: UTF-32-LE's begins with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _refuse(shown: str, message: str, line: int | None = None, key: str = "") -> CharacterError:
    return CharacterError([Problem(shown, line, key, message)])


def _read_bytes(path: Path, shown: str, max_bytes: int) -> bytes:
    """The file's bytes, at most `max_bytes`; only a regular file (a FIFO or a device could
    block for ever or never end)."""
    try:
        # a FIFO blocks at open() until someone writes: look before opening, and again after
        if not stat.S_ISREG(path.stat().st_mode):
            raise _refuse(shown, "is not a regular file")
        with path.open("rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise _refuse(shown, "is not a regular file")
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise _refuse(
            shown, f"cannot read the file ({exc.strerror or type(exc).__name__})"
        ) from None
    if len(data) > max_bytes:
        cap = (
            f"{max_bytes // (1024 * 1024)} MB"
            if max_bytes % (1024 * 1024) == 0
            else f"{max_bytes:,} bytes"
        )
        raise _refuse(shown, f"is larger than {cap}: split it into smaller files")
    return data


def _decode(data: bytes, shown: str) -> str:
    """The text: by its byte-order mark, else strict UTF-8; a sentence saying what is wrong."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise _refuse(
                    shown, f"starts with a {encoding.upper()} byte-order mark but is not "
                    f"{encoding.upper()} text: save it as UTF-8"
                ) from None  # fmt: skip
    if b"\x00" in data:
        raise _refuse(
            shown,
            "holds NUL bytes: it looks like UTF-16 or UTF-32 without a byte-order mark; "
            "save it as UTF-8",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _refuse(
            shown,
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8 "
            "(in Excel: CSV UTF-8); latin-1 and Windows-1252 files are not guessed",
            line,
        ) from None


def _json_rows(text: str, shown: str, max_rows: int) -> list[tuple[int | None, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(shown, f"invalid JSON: {exc.msg}", exc.lineno) from None
    except RecursionError:  # the C scanner counts its depth: linear, and never a crash
        raise _refuse(shown, "nests too deeply: a news file is a list of flat objects") from None
    except ValueError:  # e.g. an integer of more than 4,300 digits
        raise _refuse(shown, "invalid JSON: a number is too long") from None
    if not isinstance(data, list):
        raise _refuse(shown, "must be a list of objects", 1)
    if len(data) > max_rows:
        raise _refuse(shown, f"has more than {max_rows:,} rows: split it into smaller files")
    return [(None, row) for row in data]


def _csv_rows(text: str, shown: str, max_rows: int) -> list[tuple[int | None, object]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int | None, object]] = []
    try:
        for row in reader:
            if len(rows) == max_rows:
                raise _refuse(
                    shown, f"has more than {max_rows:,} rows: split it into smaller files"
                )
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        message = str(exc)
        if "field larger than field limit" in message:
            message = (
                f"a field is longer than {csv.field_size_limit() // 1024} KB "
                f"(content holds at most {CONTENT_BYTES:,} bytes)"
            )
        raise _refuse(shown, f"not readable as CSV: {message}", reader.reader.line_num) from None
    return rows


def _text(
    row: Mapping[object, object],
    key: str,
    *,
    chars: int | None = None,
    utf8_bytes: int | None = None,
) -> tuple[str, str | None]:
    """The field as text, and what is wrong with it (None when nothing)."""
    value = row.get(key)
    if value is None:
        return "", None
    if isinstance(value, dict | list):
        return "", "must be text, not a list or an object"
    text = str(value).strip()
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "", "holds an invalid character (a lone UTF-16 surrogate)"
    if chars is not None and len(text) > chars:
        return "", f"is {len(text):,} characters long; at most {chars:,}"
    if utf8_bytes is not None and size > utf8_bytes:
        return "", f"is {size:,} bytes long; at most {utf8_bytes:,}"
    return text, None


def _news_date(value: object) -> tuple[datetime | None, str | None]:
    if value in (None, ""):
        return None, None
    text = str(value).strip().replace("T", " ").removesuffix("Z")[:64]
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC), None
        except ValueError:
            continue
    shown = str(value) if len(str(value)) <= 40 else str(value)[:40] + "..."
    return None, f"{shown!r} is not a date like 2026-01-31 08:00"


def read_news(
    path: Path, *, max_bytes: int = MAX_FILE_BYTES, max_rows: int = MAX_ROWS
) -> list[NewsItem]:
    """News rows from a CSV (header: title, keyword, content, publish_date) or a JSON list;
    CharacterError listing each problem (file, line or index, field). Blocking: call it in a
    thread. Its time and memory are linear in the file, which is at most `max_bytes`."""
    shown = str(path)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".json"}:
        raise _refuse(shown, "news files must be .csv or .json")
    text = _decode(_read_bytes(path, shown, max_bytes), shown)
    rows = (
        _json_rows(text, shown, max_rows) if suffix == ".json" else _csv_rows(text, shown, max_rows)
    )
    items: list[NewsItem] = []
    problems: list[Problem] = []
    for index, (line, row) in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(Problem(shown, line, f"[{index}]", "must be an object"))
            continue
        title, wrong_title = _text(row, "title", chars=TITLE_CHARS)
        keyword, wrong_keyword = _text(row, "keyword", chars=KEYWORD_CHARS)
        content, wrong_content = _text(row, "content", utf8_bytes=CONTENT_BYTES)
        date, wrong_date = _news_date(row.get("publish_date"))
        found = {
            "title": wrong_title or (None if title else "is required"),
            "keyword": wrong_keyword,
            "content": wrong_content,
            "publish_date": wrong_date,
        }
        for key, message in found.items():
            if message is not None:
                problems.append(Problem(shown, line, key if line else f"[{index}].{key}", message))
        if not any(found.values()):
            items.append(NewsItem(0, title, keyword, content, date))
    if problems:
        more = len(problems) - MAX_PROBLEMS
        listed = problems[:MAX_PROBLEMS]
        if more > 0:
            listed.append(Problem(shown, None, "", f"and {more:,} more problem(s)"))
        raise CharacterError(listed)
    return items


#: `anime_roles.role_name_en` and `group_name` are VARCHAR(255)
NAME_CHARS = 255


def catalog_problem(args: object) -> str | None:
    """What is wrong with `db add-character NAME --group G --weight W` (one sentence), or None.
    A weight must be a finite number of 0 or more: NaN, infinities and negatives would make
    every weighted pick of the group wrong (0 keeps the member but never picks it)."""
    name, group, weight = (getattr(args, key) for key in ("name", "group", "weight"))
    if not math.isfinite(weight) or weight < 0:
        return f"--weight must be a finite number of 0 or more, not {weight:g}"
    for label, text in (("the name", name), ("--group", group)):
        if not str(text).strip():
            return f"{label} must not be empty"
        if len(str(text)) > NAME_CHARS:
            return f"{label} is {len(str(text))} characters long; at most {NAME_CHARS}"
    return None
