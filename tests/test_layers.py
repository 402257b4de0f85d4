"""The import rules of ARCHITECTURE.md: bot -> pipeline -> strategies -> comfy, nothing upward;
only `pipeline/wiring.py` names the concrete services; the bot reaches the pipeline through its
seams (Services and the types it carries). Each rule fails on a package with no modules, so a
moved folder cannot make it pass by checking nothing."""

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
    """The package's modules; a package without any fails the test that asked."""
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"{package}/ has no .py files: the rule would check nothing"
    return modules


def _imported_names(path: Path) -> set[str]:
    """Every dotted name the module imports, at any depth: `from a.b import c` gives `a.b` and
    `a.b.c` (c may be a module or a name in it), `import a.b` gives `a.b`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


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


# ---------------------------------------------------------------------------- import cycles

#: the project's packages, whose modules must import one another without a circle
PACKAGES = ("bot", "pipeline", "strategies", "comfy")


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its body (inside functions too), but not
    under `if TYPE_CHECKING:`, which never runs. `from a import b` is a.b when that is a module,
    else a; `import a.b.c` is the longest known prefix."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:
                    found.add(submodule)
                elif source in known:
                    found.add(source)
        pending.extend(ast.iter_child_nodes(node))
    found.discard(name)
    return found


def import_cycles(root: Path, packages: tuple[str, ...]) -> list[list[str]]:
    """Every group of modules that import one another in a circle (the strongly connected
    components of the import graph with more than one module, by Tarjan), each sorted."""
    paths = {
        _module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    known = set(paths)
    graph = {name: sorted(_imported_modules(name, path, known)) for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_no_module_imports_itself_round_a_circle() -> None:
    """No import circle anywhere in the project, not even one hidden inside a function."""
    assert [(ROOT / package).is_dir() for package in PACKAGES] == [True] * len(PACKAGES)
    assert import_cycles(ROOT, PACKAGES) == []


def test_the_circle_finder_sees_a_circle_hidden_in_a_function(tmp_path: Path) -> None:
    """A circle closed by an import inside a function is found; one through an import under
    `if TYPE_CHECKING:` (which never runs) is not."""
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from app.b import B\n")
    (package / "b.py").write_text("def make():\n    from app import a\n    return a\nB = 1\n")
    (package / "c.py").write_text("from app.d import D\n")
    (package / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.c import C\nD = 1\n"
    )
    (package / "e.py").write_text("from . import f\n")
    (package / "f.py").write_text("import app.e\n")
    assert import_cycles(tmp_path, ("app",)) == [["app.a", "app.b"], ["app.e", "app.f"]]


#: the concrete services and what builds them, by the package they belong to: only
#: `pipeline/wiring.py` and that package itself name them; everything else sees Protocols
CONCRETE = {
    "pipeline/llm/": {
        "pipeline.llm.ollama",
        "pipeline.llm.openai_compat",
        "pipeline.llm.gemini",
        "pipeline.llm.factory",  # it builds the providers above from settings
    },
    "pipeline/store/": {
        "pipeline.store.sql",
        "pipeline.store.mysql",
        "pipeline.store.sqlite",
        "pipeline.store.SqlStore",
        "pipeline.store.connect",
        "pipeline.store.open_store",
    },
    "pipeline/publish/": {
        "pipeline.publish.instagram",
        "pipeline.publish.twitter",
        "pipeline.publish.bluesky",
        "pipeline.publish.facebook",
        "pipeline.publish.instagram_graph",
        "pipeline.publish.image_host",
        "pipeline.publish.threads",
        "pipeline.publish.discord_stickers",
        "pipeline.publish.InstagramPublisher",
        "pipeline.publish.BlueskyPublisher",
        "pipeline.publish.TwitterPublisher",
        "pipeline.publish.build_publish_service",
    },
    "comfy/": {"comfy.ComfyPool", "comfy.ComfyClient", "comfy.pool", "comfy.client"},
}
#: an entry point owns every resource it hands on (STYLE.md, after discord.py's
#: advanced_startup): it opens the store itself, so it closes it last, after the services
ENTRY_POINTS = {
    "pipeline/__main__.py": {"pipeline.store", "pipeline.store.open_store"},
    "bot/__main__.py": {"pipeline.store", "pipeline.store.open_store"},
    # the stats and collect-metrics commands of pipeline/__main__.py, in a module of their own
    "pipeline/cli_stats.py": {"pipeline.store", "pipeline.store.open_store"},
}


@pytest.mark.parametrize("package", ["pipeline", "bot"])
def test_only_wiring_names_the_concrete_services(package: str) -> None:
    """Which LLM, store, publishers and ComfyUI pool run is decided in pipeline/wiring.py
    alone: no other module (outside the service's own package) imports them."""
    offenders: dict[str, list[str]] = {}
    for path in _modules(package):
        name = _name(path)
        if name == "pipeline/wiring.py":
            continue
        allowed = ENTRY_POINTS.get(name, set())
        named = {
            imported
            for home, concrete in CONCRETE.items()
            if not name.startswith(home)
            for imported in _imported_names(path) & concrete
        }
        if named - allowed:
            offenders[name] = sorted(named - allowed)
    assert offenders == {}


#: what every bot module may import from the pipeline, and why: Services and what it carries
BOT_SEAMS = {
    "pipeline.models": "the domain records it renders",
    "pipeline.errors": "the error tree, for user-safe replies",
    "pipeline.ports": "the Protocols it implements (Reviewer, Notifier, ProgressSink)",
    "pipeline.settings": "its settings",
    "pipeline.characters": "the characters Services carries",
    "pipeline.runner": "the Runner Services carries",
    "pipeline.lease": "the refusal of a run another process holds, and who holds it",
}
#: more, for one module each, and why
BOT_MORE = {
    # the entry point: settings -> logging -> store, services (from wiring) -> the bot
    "bot/__main__.py": {
        "pipeline.wiring",
        "pipeline.store",
        "pipeline.logs",
        "pipeline.failures",
        "pipeline.llm.doctor",
    },
    # Services is built here: the one Runner (wiring.build_runner), the caption-edit
    # limits it offers the review cog (captions.edited_caption_problems), and the checks and
    # download of /generate's options (options.check_options, fetch_image)
    # and the publish queue it carries for the queue cog (pipeline.publish.queue)
    "bot/services.py": {
        "pipeline.wiring",
        "pipeline.captions",
        "pipeline.options",
        "pipeline.publish.queue",
        "pipeline.metrics",  # the metrics collector it carries, and the store type with readings
    },
    # who asks for the schedule's runs, to tell them from a person's
    "bot/access.py": {"pipeline.schedule"},
    # the loops the bot runs over pipeline policies (ARCHITECTURE.md: the bot runs the loops)
    "bot/app.py": {"pipeline.recovery"},
    "bot/cogs/schedule.py": {"pipeline.scheduler"},
    "bot/cogs/retention.py": {"pipeline.retention"},
    "bot/cogs/queue.py": {"pipeline.publish.queue"},
    # the waiting posts /queue lists (pipeline.queued.QueuedPost, a domain record)
    "bot/render.py": {"pipeline.queued"},
    "bot/cogs/metrics.py": {"pipeline.metrics"},
    # /stats: the stats, their table and chart are the pipeline's; the cog only renders them
    "bot/cogs/stats.py": {"pipeline.stats", "pipeline.stats_chart"},
    # what a file over Discord's upload limit is shown as (the preview policy is the pipeline's)
    "bot/review.py": {"pipeline.previews"},
    # the same for the drafts of a pick between stages
    "bot/stage_pick.py": {"pipeline.previews"},
}


def _pipeline_modules(names: set[str]) -> set[str]:
    """The pipeline modules among imported names: `pipeline.a.b` -> `pipeline.a` unless
    `pipeline.a.b` is a module itself (a subpackage's module, such as pipeline.llm.doctor)."""
    modules: set[str] = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "pipeline" or len(parts) < 2:
            continue
        for depth in range(len(parts), 1, -1):
            dotted = ".".join(parts[:depth])
            if (ROOT / Path(*dotted.split("."))).with_suffix(".py").is_file():
                modules.add(dotted)
                break
            if (ROOT / Path(*dotted.split(".")) / "__init__.py").is_file():
                modules.add(dotted)
                break
    return modules


def test_the_bot_reaches_the_pipeline_through_its_seams() -> None:
    """Cogs, the reviewer and the rest of bot/ import from the pipeline only the seams (the
    Services object's parts, the domain types, errors, settings, ports); the entry point
    wires, and a cog that runs a pipeline loop imports that loop's module."""
    offenders: dict[str, list[str]] = {}
    for path in _modules("bot"):
        allowed = set(BOT_SEAMS) | BOT_MORE.get(_name(path), set())
        used = _pipeline_modules(_imported_names(path))
        if used - allowed:
            offenders[_name(path)] = sorted(used - allowed)
    assert offenders == {}


def test_a_rule_over_a_package_without_modules_fails() -> None:
    """A checked package that moved or emptied fails the rules instead of passing them."""
    with pytest.raises(AssertionError, match=r"no \.py files"):
        _modules("no-such-package")
