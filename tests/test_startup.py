"""Start-up cost: the heavy client libraries are imported only when what needs them is built,
and the command lines' `--help` loads none of them (benchmarks/startup.py times it)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import comfy

ROOT = Path(__file__).resolve().parents[1]
#: about 5 s of imports together: each is paid only by a start that uses it
HEAVY = (
    "openai",
    "google.genai",
    "twitter_text",
    "tweepy",
    "instagrapi",
    "ollama",
    "atproto",
    "boto3",
    "matplotlib",
)
#: the publishers' client libraries
PLATFORM_CLIENTS = ("atproto", "instagrapi", "curl_cffi", "tweepy", "twitter_text", "boto3")
#: what `--help` and the commands that touch no service must not pay for (about 0.5 s)
SERVICES = (
    *HEAVY,
    "discord",
    "ollama",
    "PIL",
    "aiomysql",
    "aiosqlite",
    "aiohttp",
    "httpx",
    "pydantic",
    "pydantic_settings",
    "yaml",
)


def imported_after(code: str, watched: tuple[str, ...] = HEAVY) -> set[str]:
    """Which of the `watched` libraries a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(n for n in {watched!r} if n in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=50,
    )
    return set(done.stdout.split())


def test_the_entry_points_start_without_the_client_libraries() -> None:
    """`python -m bot` and `python -m pipeline` load the wiring without paying for the model
    and platform client libraries; they come when a provider or publisher is built."""
    assert imported_after("import pipeline.wiring, pipeline.__main__, bot.__main__") == set()


def test_models_without_keys_do_not_load_the_openai_or_gemini_clients() -> None:
    """With only Ollama configured, neither the OpenAI nor the Gemini library is loaded."""
    code = (
        "from pipeline.llm.factory import build_models\n"
        "from pipeline.settings import load_settings\n"
        "build_models(load_settings(None, llm_chain=['ollama'], openrouter_api_key=None,"
        " gemini_api_key=None))"
    )
    assert imported_after(code, ("openai", "google.genai")) == set()


def test_reading_the_settings_loads_no_network_client() -> None:
    """Every command reads the settings; checking COMFYUI_SERVERS there must not load aiohttp
    and the ComfyUI client, so that `runs`, `show` and `db` stay quick."""
    code = (
        "from pipeline.settings import load_settings\n"
        "load_settings(None, comfyui_servers='http://a:8188#video,http://b:8188')"
    )
    assert imported_after(code, ("aiohttp", "comfy.client", "comfy.pool")) == set()


def test_a_platform_client_library_loads_when_its_platform_is_first_used() -> None:
    """Building the publishers (as the bot does at start) loads no platform client; the first
    use of Bluesky's publisher loads atproto, and still none of the others."""
    build = (
        "from pipeline.models import Platform\n"
        "from pipeline.publish import build_publishers\n"
        "from pipeline.settings import load_settings\n"
        "publishers = build_publishers(load_settings(None))\n"
    )
    assert imported_after(build, PLATFORM_CLIENTS) == set()
    use = build + "import asyncio\nasyncio.run(publishers[Platform.BLUESKY].publisher())\n"
    assert imported_after(use, PLATFORM_CLIENTS) == {"atproto"}


@pytest.mark.parametrize(
    "code",
    [
        "import pipeline.__main__ as m; m.build_parser()",
        "import comfy.__main__ as m; m.build_parser()",
        "from comfy import ComfyError, Workflow, WorkflowError",
    ],
    ids=["pipeline-help", "comfy-help", "comfy-workflow-and-errors"],
)
def test_help_loads_no_service_library(code: str) -> None:
    """`python -m pipeline --help` and `python -m comfy --help` answer without loading any
    client, database driver, pydantic or Pillow, so they start in a fraction of a second."""
    assert imported_after(code, SERVICES) == set()


def test_every_public_comfy_name_is_its_modules_own() -> None:
    """`comfy`'s names, loaded on first use, are the very classes and functions of its
    modules (an `except comfy.ComfyError` catches what `comfy.client` raises)."""
    modules = [
        importlib.import_module(f"comfy.{name}")
        for name in ("client", "errors", "events", "pool", "preflight", "records", "workflow")
    ]
    for name in comfy.__all__:
        value = getattr(comfy, name)
        assert any(getattr(module, name, None) is value for module in modules), name
    assert set(comfy.__all__) <= set(dir(comfy))
