"""The Docker files as an operator uses them: compose brings up the bot on a healthy MariaDB
with its folders as volumes, and no secret or local state goes into the build context.

Docker does not run in the tests: the files are read and checked for what matters.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_the_bot_waits_for_a_healthy_database(compose: dict[str, Any]) -> None:
    """`docker compose up` starts MariaDB, checks it is healthy, then starts the bot on it."""
    services = compose["services"]
    assert set(services) == {"bot", "db"}
    assert services["db"]["image"].startswith("mariadb:")
    assert "test" in services["db"]["healthcheck"]
    assert services["bot"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    url = services["bot"]["environment"]["DATABASE_URL"]
    assert url.startswith("mysql://")
    assert "@db:3306/" in url
    assert services["bot"]["env_file"] in (".env", [".env"])
    assert services["bot"]["build"] == "."


@pytest.mark.parametrize(
    "folder",
    [
        pytest.param("/app/data", id="data"),
        pytest.param("/app/output", id="output"),
        pytest.param("/app/characters", id="characters"),
        pytest.param("/app/workflows", id="workflows"),
        pytest.param("/app/credentials", id="credentials"),
    ],
)
def test_each_folder_the_bot_keeps_or_reads_is_a_volume(
    compose: dict[str, Any], folder: str
) -> None:
    """Data, media, characters, workflows and credentials live outside the container."""
    targets = [str(v).split(":")[1] for v in compose["services"]["bot"]["volumes"]]
    assert folder in targets
    named = [str(v).split(":")[0] for v in compose["services"]["bot"]["volumes"]]
    declared = set(compose.get("volumes") or {})
    assert all(n.startswith(".") or n in declared for n in named)
    assert any("/var/lib/mysql" in str(v) for v in compose["services"]["db"]["volumes"])


def test_the_image_declares_credentials_a_volume() -> None:
    """The Dockerfile never bakes credentials in: /app/credentials is a volume."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    [volume] = [line for line in dockerfile.splitlines() if line.startswith("VOLUME")]
    assert "/app/credentials" in volume


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker's build context leaves `path` out (last matching pattern wins)."""
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, bare) or fnmatch.fnmatch(p, f"**/{bare}") for p in prefixes):
            verdict = not negated
    return verdict


@pytest.mark.parametrize(
    ("path", "left_out"),
    [
        pytest.param(".env", True, id="env"),
        pytest.param(".venv/bin/python", True, id="venv"),
        pytest.param("data/mediaoverload.db", True, id="data"),
        pytest.param("credentials/fox_ig.json", True, id="credentials"),
        pytest.param(".git/config", True, id="git"),
        pytest.param(".mypy_cache/3.11/x.json", True, id="caches"),
        pytest.param("bot/__pycache__/app.cpython-311.pyc", True, id="bytecode"),
        pytest.param("bot/app.py", False, id="source-kept"),
        pytest.param("characters/example.yaml", False, id="characters-kept"),
        pytest.param("pyproject.toml", False, id="project-kept"),
    ],
)
def test_the_build_context_leaves_out_secrets_and_local_state(path: str, left_out: bool) -> None:
    """`docker build` does not send .env, credentials, data or the venv to the daemon."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignored(path, patterns) is left_out
