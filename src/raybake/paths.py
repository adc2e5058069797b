"""Where raybake keeps its own state on the host."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

log = logging.getLogger("raybake.paths")

SCRATCH_LOCK = ".lock"
_MAKING = ".making-"
# A scratch directory is made and locked under a name starting with _MAKING,
# then renamed: one left with that name (its maker was killed in those
# microseconds) is abandoned once older than this.
UNLOCKED_SCRATCH_AGE = 3600.0


def cache_dir() -> Path:
    """RAYBAKE_CACHE_DIR, else $XDG_CACHE_HOME/raybake, else ~/.cache/raybake.

    When that directory cannot be created or written (a read-only home, a CI
    sandbox), a private directory under the system's temp dir stands in: raybake's
    memos and locks are a convenience, never a reason to fail."""
    explicit = os.environ.get("RAYBAKE_CACHE_DIR")
    if explicit:
        return _usable(Path(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return _usable(Path(base) / "raybake")


@cache
def _usable(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            return path
    except OSError as exc:
        fallback = _private_temp_dir()
        log.warning("cannot use %s as raybake's cache (%s); using %s", path, exc.strerror or exc, fallback)
        return fallback


def _private_temp_dir() -> Path:
    """$TMPDIR/raybake-UID, created 0700; a fresh one when that name is not
    safely ours (another user could have planted it)."""
    path = Path(tempfile.gettempdir()) / f"raybake-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022:
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="raybake-"))


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory under cache_dir()/tmp, removed afterwards.

    Its process holds an flock on a file inside it for its whole life, so the
    next run can tell the directories of killed runs (no live holder) from
    those in use, and removes them (sweep_scratch)."""
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    sweep_scratch(root)
    # Made and locked under a name the sweep leaves alone while young, then
    # renamed: a build-* directory always has its lock taken.
    making = Path(tempfile.mkdtemp(prefix=_MAKING, dir=root))
    fd = os.open(making / SCRATCH_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = root / f"{prefix}{making.name.removeprefix(_MAKING)}"
        making.rename(path)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)
        shutil.rmtree(making, ignore_errors=True)  # only when the rename never happened


def sweep_scratch(root: Path) -> None:
    """Remove the scratch directories of runs that were killed: those whose lock no live process holds."""
    for path in root.iterdir():
        try:
            if not path.is_dir() or path.is_symlink():
                continue
            age = time.time() - path.stat().st_mtime
        except OSError:
            continue
        if path.name.startswith(_MAKING) and age < UNLOCKED_SCRATCH_AGE:
            continue  # its maker is about to lock it
        try:
            fd = os.open(path / SCRATCH_LOCK, os.O_RDWR)
        except FileNotFoundError:
            if age > UNLOCKED_SCRATCH_AGE:
                shutil.rmtree(path, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live run holds it
        else:
            shutil.rmtree(path, ignore_errors=True)
            log.debug("removed %s, left by a run that was killed", path)
        finally:
            os.close(fd)
