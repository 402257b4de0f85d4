"""Checking workflow files for `python -m pipeline check`: readable, API format, well formed.

Reports problems as `file:line: message` like the character checks. Imports the error types only.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import Problem


def check_workflow(path: Path, *, root: Path) -> list[Problem]:
    """Every problem of one workflow file (empty when it is a usable API-format workflow)."""
    try:
        shown = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        shown = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [Problem(shown, None, "", f"cannot read the file ({exc.strerror})")]
    except json.JSONDecodeError as exc:
        return [Problem(shown, exc.lineno, "", f"invalid JSON: {exc.msg}")]
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        return [
            Problem(shown, 1, "", "this is a UI-format workflow: export it with Save (API Format)")
        ]
    if not isinstance(data, dict) or not data:
        return [Problem(shown, 1, "", "must be an API-format workflow: an object of nodes by id")]
    problems = []
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            problems.append(Problem(shown, None, node_id, "node has no class_type"))
        elif not isinstance(node.get("inputs", {}), dict):
            problems.append(Problem(shown, None, f"{node_id}.inputs", "must be an object"))
    return problems
