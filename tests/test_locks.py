"""Cross-process build locks (raybake.locks): RAYBAKE_LOCK_TIMEOUT bounds the wait."""

import uuid

import pytest
from filelock import FileLock

from raybake.errors import RaybakeError
from raybake.locks import build_lock, lock_dir


def test_waiting_for_another_raybake_gives_up_after_raybake_lock_timeout(monkeypatch):
    monkeypatch.setenv("RAYBAKE_LOCK_TIMEOUT", "1")
    key = f"test-{uuid.uuid4().hex}"
    before = set(lock_dir().iterdir())
    with build_lock(key):
        (held,) = set(lock_dir().iterdir()) - before
    with FileLock(held):  # another raybake: a lock on its own open file, as another process holds it
        with pytest.raises(RaybakeError, match=rf"gave up after \d+ s waiting for another raybake working on {key}"
                           ) as info, build_lock(key):
            pass
    assert "RAYBAKE_LOCK_TIMEOUT" in info.value.fix
    with build_lock(key):  # the other let go: free again
        pass
