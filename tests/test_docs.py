"""The documentation against the code: every setting is in `.env.example` and in the docs, and
every relative link in README.md and docs/*.md leads to a file (and heading) that exists.

Reads files only; anchors are GitHub's heading slugs, computed as GitHub computes them.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic import SecretStr

from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SETTINGS = sorted(name.upper() for name in Settings.model_fields)

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
#: [text](target) and ![alt](target); a target may carry a "title"
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(path: Path) -> list[str]:
    """The file's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text without markup, lower case, punctuation
    dropped (letters, digits, `_`, `-` and spaces stay), spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts as its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("`", "").replace("*", "")
    text = "".join(ch for ch in text.lower() if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; repeated headings get -1, -2, … as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose_lines(path):
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def relative_links(path: Path) -> list[str]:
    """Link targets in the file's prose that point inside the repository (no scheme)."""
    targets = []
    for line in prose_lines(path):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
                continue  # https:, mailto: and the like
            targets.append(target)
    return targets


def broken(path: Path, target: str) -> str | None:
    """Why `target`, linked from `path`, does not resolve; None when it does."""
    file_part, _, anchor = target.partition("#")
    goal = (path.parent / unquote(file_part)).resolve() if file_part else path
    if not goal.exists():
        return f"{target}: no file {goal.relative_to(ROOT) if goal.is_relative_to(ROOT) else goal}"
    if not goal.is_relative_to(ROOT):
        return f"{target}: outside the repository"
    if anchor and goal.suffix == ".md" and unquote(anchor).lower() not in anchors(goal):
        return f"{target}: no heading with the anchor #{anchor} in {goal.relative_to(ROOT)}"
    return None


def test_slugs_are_githubs() -> None:
    """A link to a heading uses the anchor GitHub gives that heading, so it lands there."""
    assert slug("Quick start") == "quick-start"
    assert slug("2. Invite the bot to your server") == "2-invite-the-bot-to-your-server"
    assert slug("`custom_node_updates`") == "custom_node_updates"
    assert (
        slug("Publishing a run again: `python -m pipeline publish RUN_ID`")
        == "publishing-a-run-again-python--m-pipeline-publish-run_id"
    )
    assert slug("Paused accounts and `uncertain` posts") == "paused-accounts-and-uncertain-posts"


def test_every_setting_is_in_env_example() -> None:
    """Each setting the code reads is in .env.example, so copying it shows every knob."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    written = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    missing = [name for name in SETTINGS if name not in written]
    assert not missing, f"settings missing from .env.example: {', '.join(missing)}"


def test_every_setting_is_documented() -> None:
    """Each setting the code reads is explained in README.md or docs/*.md."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in DOCS)
    missing = [name for name in SETTINGS if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"settings in no document: {', '.join(missing)}"


def test_env_example_names_only_real_settings() -> None:
    """.env.example sets nothing the code ignores (a misspelt name would silently do nothing)."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    written = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    unknown = sorted(written - set(SETTINGS))
    assert not unknown, f".env.example names settings the code does not read: {unknown}"


def test_env_example_loads_as_the_defaults(tmp_path: Path) -> None:
    """Copying .env.example to .env and running changes no setting from its default."""
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    loaded = Settings(_env_file=env)
    defaults = Settings(_env_file=None)
    changed = [
        name.upper()
        for name in Settings.model_fields
        if _plain(getattr(loaded, name)) != _plain(getattr(defaults, name))
    ]
    assert not changed, f".env.example changes these settings: {', '.join(changed)}"


def _plain(value: object) -> object:
    """A setting's value to compare; an empty secret is the same as an unset one."""
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    return value


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_relative_links_resolve(path: Path) -> None:
    """Every link to another file or heading in the README and the guides leads somewhere."""
    problems = [why for target in relative_links(path) if (why := broken(path, target))]
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)
