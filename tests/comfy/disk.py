"""A real "disk full" for one test, without privileges: while `file_size_limit(n)` holds, the
kernel refuses writes that would grow a file past `n` bytes with EFBIG ("File too large"), an
OSError with no file name, as ENOSPC (disk full) and EDQUOT (over quota) are. SIGXFSZ is ignored
meanwhile, so the write fails instead of the process being killed. The limit is the whole
process's: keep `n` above what the test's other files (a SQLite store) grow to.
"""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
