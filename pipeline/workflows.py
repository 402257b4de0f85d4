"""Checking workflow files for `python -m pipeline check`, with comfy.Workflow's own rules.

Reports problems as `file:line: message` like the character checks. Imports comfy's Workflow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from comfy import Workflow, WorkflowError
from pipeline.errors import Problem


def node_line(text: str, node_id: str) -> int | None:
    """The line of a node's key in an API-format workflow file (None when it cannot be told)."""
    key = re.escape(json.dumps(node_id))
    found = re.search(rf"^[ \t]*{key}[ \t]*:\s*\{{", text, flags=re.MULTILINE)
    return text.count("\n", 0, found.start()) + 1 if found else None


def check_workflow(path: Path, *, root: Path) -> list[Problem]:
    """Every problem of one workflow file (empty when it is a usable API-format workflow)."""
    try:
        shown = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(shown, None, "", f"cannot read the file ({exc})")]
    try:
        Workflow.from_json(text, source=shown)
    except WorkflowError as exc:
        cause = exc.__cause__
        line = cause.lineno if isinstance(cause, json.JSONDecodeError) else None
        return [Problem(shown, line, "", str(exc).removeprefix(f"{shown}: "))]
    return []
