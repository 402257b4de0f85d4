"""The command line as a user starts it, for the tests of its commands: `run` starts
`python -m <module> ...` in a project folder, clean of the developer's Discord token and
database; the shipped characters' credentials for `check`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "DATABASE_URL"}}
    clean |= {"PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=60
    )


#: credentials of the shipped characters' enabled platforms (check asks for them)
SHIPPED_CREDENTIALS = {
    **{f"MASCOT_INSTAGRAM_{k}": "x" for k in ("USERNAME", "PASSWORD")},
    **{f"MOONLIT_INSTAGRAM_{k}": "x" for k in ("USERNAME", "PASSWORD")},
    **{
        f"MASCOT_TWITTER_{k}": "x"
        for k in ("API_KEY", "API_SECRET", "ACCESS_TOKEN", "ACCESS_SECRET")
    },
    "COMFYUI_SERVERS": "http://127.0.0.1:9",  # nothing answers there: a note, not a problem
}
