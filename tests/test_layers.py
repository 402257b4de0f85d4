"""The import rules of ARCHITECTURE.md: bot -> pipeline -> strategies -> comfy, nothing upward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "comfy": {"bot", "pipeline", "strategies", "discord"},
    "strategies": {"bot", "pipeline", "discord"},
    "pipeline": {"bot", "discord"},
}
# comfy may be published on its own: the standard library and aiohttp only
COMFY_THIRD_PARTY = {"aiohttp", "multidict", "yarl"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_only_point_down(package: str) -> None:
    """No lower layer reaches up into a higher one."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in _modules(package)
        if _imports(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_comfy_needs_only_the_standard_library_and_aiohttp() -> None:
    """comfy/ could be published on its own."""
    import sys

    allowed = set(sys.stdlib_module_names) | COMFY_THIRD_PARTY | {"comfy", "__future__"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) - allowed) for path in _modules("comfy")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_bot_never_imports_strategies_or_comfy() -> None:
    """The bot reaches generation only through the pipeline."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & {"strategies", "comfy"})
        for path in _modules("bot")
        if _imports(path) & {"strategies", "comfy"}
    }
    assert offenders == {}
