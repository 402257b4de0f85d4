"""Start-up cost: the heavy client libraries are imported only when what needs them is built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: about 3 s of imports together: each is paid only by a start that uses it
HEAVY = ("openai", "google.genai", "twitter_text", "tweepy", "instagrapi")


def imported_after(code: str) -> set[str]:
    """Which of the heavy libraries a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(n for n in {HEAVY!r} if n in sys.modules))"
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
    assert imported_after(code) == set()
