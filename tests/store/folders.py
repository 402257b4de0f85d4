"""A folder that really cannot be written, for tests that run as root too.

Root writes through mode bits (CAP_DAC_OVERRIDE), so `chmod a-w` proves nothing there; the
immutable attribute (`chattr +i`) stops root as well, so it is used when it can be set. As
another user, mode bits do the job. Neither possible: the test is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """`folder`, made and then closed to writes (its files cannot be created or changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if (
        chattr is None
        or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode
    ):
        pytest.skip("running as root where chattr +i is not possible: no folder is read-only")
    try:
        yield folder
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)
