"""Cross-process locks, so that concurrent raybake runs never build or write twice."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from raybake.errors import RaybakeError
from raybake.paths import cache_dir
from raybake.settings import LOCK_TIMEOUT
from raybake.tools.run import raise_if_stopping


def lock_dir() -> Path:
    path = cache_dir() / "locks"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def build_lock(key: str, *, on_wait: Callable[[float], None] = lambda s: None,
               timeout: float | None = None) -> Iterator[None]:
    """Hold the lock for ``key``; report every few seconds while waiting for it.

    flock-based: a killed holder releases it with its process, so no stale lock
    can block the next build."""
    from filelock import FileLock, Timeout  # imported only when a lock is needed

    timeout = LOCK_TIMEOUT.value() if timeout is None else timeout
    name = hashlib.sha256(key.encode()).hexdigest()[:24] + ".lock"
    lock = FileLock(lock_dir() / name)
    start = time.monotonic()
    while True:
        raise_if_stopping()  # raybake is stopping: a thread building beside the main one stops waiting
        try:
            lock.acquire(timeout=5)
            break
        except Timeout:
            waited = time.monotonic() - start
            if waited >= timeout:
                raise RaybakeError(f"gave up after {waited:.0f} s waiting for another raybake working on {key}",
                                   fix="wait for the other build to finish, or raise RAYBAKE_LOCK_TIMEOUT") from None
            on_wait(waited)
    try:
        yield
    finally:
        lock.release()
