"""Reading a news file for `db import-news` (pipeline/news.py): what a person importing a file
notices. Every refusal names the file (and the row and field where there is one); nothing is
read past the caps, and nothing blocks on a file that is not a regular one."""

from __future__ import annotations

import codecs
import json
import os
import time
from pathlib import Path

import pytest

from pipeline.errors import CharacterError
from pipeline.news import read_news

HEADER = "title,keyword,content,publish_date\n"


def refusal(path: Path, **caps: int) -> list[str]:
    with pytest.raises(CharacterError) as caught:
        read_news(path, **caps)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("bom", "codec"),
    [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
     (codecs.BOM_UTF16_BE, "utf-16-be"), (codecs.BOM_UTF32_LE, "utf-32-le"),
     (codecs.BOM_UTF32_BE, "utf-32-be")],
    ids=["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"],
)  # fmt: skip
def test_a_file_with_a_byte_order_mark_is_read_in_its_encoding(
    tmp_path: Path, bom: bytes, codec: str
) -> None:
    """Excel's and Notepad's Unicode files (a byte-order mark first) import as written."""
    path = tmp_path / "news.csv"
    path.write_bytes(
        bom + (HEADER + "Caf\u00e9 \U0001f98a,food,Cr\u00e8me,2026-01-02\n").encode(codec)
    )
    [item] = read_news(path)
    assert (item.title, item.keyword, item.content) == (
        "Caf\u00e9 \U0001f98a",
        "food",
        "Cr\u00e8me",
    )


def test_a_byte_order_mark_that_lies_is_refused(tmp_path: Path) -> None:
    """A UTF-16 mark before bytes that are not UTF-16 says so instead of importing garble."""
    path = tmp_path / "news.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + b"title\n\x00\xd8")  # a lone surrogate
    assert refusal(path) == [
        f"{path}: starts with a UTF-16 byte-order mark but is not UTF-16 text: save it as UTF-8"
    ]


def test_a_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    """A file larger than the cap is refused with a sentence saying to split it."""
    path = tmp_path / "news.csv"
    path.write_text(HEADER + "A,b,c,\n" * 2000)
    assert refusal(path, max_bytes=10_000) == [
        f"{path}: is larger than 10,000 bytes: split it into smaller files"
    ]


def test_more_rows_than_the_cap_are_refused(tmp_path: Path) -> None:
    """A file with more rows than one import takes says to split it, for CSV and JSON."""
    csv_path = tmp_path / "news.csv"
    csv_path.write_text(HEADER + "A,b,c,\n" * 11)
    json_path = tmp_path / "news.json"
    json_path.write_text(json.dumps([{"title": "A"}] * 11))
    for path in (csv_path, json_path):
        assert refusal(path, max_rows=10) == [
            f"{path}: has more than 10 rows: split it into smaller files"
        ]


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A named pipe (which would block the import until someone writes) is refused at once."""
    path = tmp_path / "news.csv"
    os.mkfifo(path)
    started = time.monotonic()
    assert refusal(path) == [f"{path}: is not a regular file"]
    assert time.monotonic() - started < 1


def test_fields_are_checked_against_their_columns(tmp_path: Path) -> None:
    """A title over 512 characters, a keyword over 255 and a lone surrogate are named by
    row and field; the other rows are not imported either."""
    path = tmp_path / "news.json"
    path.write_text(
        json.dumps([
            {"title": "ok"},
            {"title": "t" * 513, "keyword": "k" * 256},
            {"title": "\ud800 broken"},
            {"content": "no title"},
            [1, 2],
        ])
    )  # fmt: skip
    assert refusal(path) == [
        f"{path}: [1].title: is 513 characters long; at most 512",
        f"{path}: [1].keyword: is 256 characters long; at most 255",
        f"{path}: [2].title: holds an invalid character (a lone UTF-16 surrogate)",
        f"{path}: [3].title: is required",
        f"{path}: [4]: must be an object",
    ]


def test_a_flood_of_problems_is_listed_in_part(tmp_path: Path) -> None:
    """A file where every row is wrong lists the first 20 problems and counts the rest."""
    path = tmp_path / "news.csv"
    path.write_text(HEADER + ",b,c,\n" * 50)
    problems = refusal(path)
    assert len(problems) == 21
    assert problems[-1] == f"{path}: and 30 more problem(s)"


def test_a_number_too_long_for_python_is_invalid_json_not_a_crash(tmp_path: Path) -> None:
    """A 5,000-digit number (past Python's int limit) is a sentence, not a ValueError."""
    path = tmp_path / "news.json"
    path.write_text('[{"title": ' + "9" * 5000 + "}]")
    assert refusal(path) == [f"{path}: invalid JSON: a number is too long"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("utf16.csv", (HEADER + "Caf\u00e9,food,x,\n").encode("utf-16-le"),
         "utf16.csv: holds NUL bytes: it looks like UTF-16 or UTF-32 without a byte-order mark; "
         "save it as UTF-8"),
        ("wide.csv", (HEADER + "A,b,c,\nB,c," + "x" * 140_000 + ",\n").encode(),
         "wide.csv:3: not readable as CSV: a field is longer than 128 KB (content holds at most "
         "65,535 bytes)"),
        ("long.json", json.dumps([{"title": "A", "content": "\u00e9" * 40_000}]).encode(),
         "long.json: [0].content: is 80,000 bytes long; at most 65,535"),
        ("deep.json", b"[" * 100_000,
         "deep.json: nests too deeply: a news file is a list of flat objects"),
        ("nested.json", json.dumps([{"title": {"a": [1]}}]).encode(),
         "nested.json: [0].title: must be text, not a list or an object"),
    ],
    ids=["utf-16-no-bom", "field-over-128k", "content-over-column", "deep-json",
         "object-as-title"],
)  # fmt: skip
def test_a_file_that_cannot_be_imported_is_named_with_its_row_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, content: bytes, expected: str
) -> None:
    """A file without a byte-order mark in UTF-16, a field over the CSV reader's cap, text over
    its column, deep nesting, an object for a title: each is one sentence naming the file (and
    the row and field where there is one), as `db import-news` prints it."""
    monkeypatch.chdir(tmp_path)
    Path(name).write_bytes(content)
    assert refusal(Path(name)) == [expected]
