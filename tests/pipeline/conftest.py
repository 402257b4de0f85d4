"""Fixtures for whole runs (project, comfy, world), shared with tests/faults via tests/runs.py."""

from tests.runs import comfy, project, world

__all__ = ["comfy", "project", "world"]
