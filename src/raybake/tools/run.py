"""The one place raybake starts a subprocess.

Children run in a process group of their own, and raybake ends that group
itself whenever it stops waiting for one: on a time limit, on Ctrl-C or
SIGTERM (which reach raybake, not the group), on any error. So no
`docker buildx build` or `docker push` outlives the raybake that started it.

Signals reach only the main thread. When other threads wait for children
(`raybake build --all` builds images side by side), the main thread ends them
all with ``stopping()``: each waiting thread then raises Interrupted, cleans up
as it unwinds (removing an unverified image, a container), and starts nothing else."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from raybake.errors import ToolError, ToolTimeout

log = logging.getLogger("raybake.run")
STOP_GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL: docker CLIs cancel their request in this time


class Interrupted(KeyboardInterrupt):
    """raybake is stopping (Ctrl-C or SIGTERM reached the main thread): raised in
    the threads beside it, which unwind as the main thread does, never as a failed build."""


# Every child some thread waits for, with its on_abort; the main thread stops them all.
_live: dict[subprocess.Popen[str], Callable[[], None] | None] = {}
_live_lock = threading.Lock()
_stopping = threading.Event()
_stopped: set[int] = set()  # pids of the children stopping() ended


@contextmanager
def stopping() -> Iterator[None]:
    """Stop every live child (their on_abort first) and start no new one, except
    for cleanup (a thread that is unwinding from an exception), until the block
    ends normally. The main thread wraps its wait for the other threads' unwinding in it."""
    with _live_lock:
        _stopping.set()
        children = list(_live.items())
        _stopped.update(proc.pid for proc, _ in children)
    for _, on_abort in children:
        if on_abort is not None:
            try:
                on_abort()
            except Exception as exc:  # noqa: BLE001 - best effort: the group is stopped next anyway
                log.debug("cleanup before stopping a child failed: %s", exc)
    _stop(*(proc for proc, _ in children))
    yield
    _stopping.clear()
    _stopped.clear()


def raise_if_stopping() -> None:
    """For threads that wait on something other than a child (a lock): Interrupted when raybake is stopping."""
    if _stopping.is_set() and sys.exc_info()[0] is None:
        raise Interrupted


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    on_abort: Callable[[], None] | None = None,
    unset: Collection[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, raise ``ToolError`` when it fails
    (``ToolTimeout`` when it ran out of ``timeout`` seconds and was stopped).

    ``env`` is added to the current environment, not a replacement for it;
    the variables named in ``unset`` are taken out of it.
    ``on_abort`` runs first when raybake stops waiting early, before the
    command is stopped (e.g. to remove the container a `docker run` waits for)."""
    args = _args(argv)
    with _started(args, cwd=cwd, env=env, unset=unset, on_abort=on_abort, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolTimeout(f"{shlex.join(args)} did not finish within {timeout:.0f} s",
                              seconds=timeout or 0) from None
    result = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise ToolError(f"{shlex.join(args)} failed (exit {proc.returncode}):\n"
                        f"{(stderr or stdout).strip()}")
    return result


def stream(
    argv: Sequence[str | os.PathLike[str]],
    on_line: Callable[[str], None],
    *,
    timeout: float | None = None,
) -> int:
    """Run a command, passing each line of its output (stdout and stderr) to
    ``on_line`` as it comes; return its exit code. ``ToolTimeout`` when it ran
    out of ``timeout`` seconds and was stopped."""
    args = _args(argv)
    with _started(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _stop(proc)

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                on_line(line.rstrip("\n"))
            code = proc.wait()
        finally:
            if timer:
                timer.cancel()
        if expired.is_set():
            raise ToolTimeout(f"{shlex.join(args)} did not finish within {timeout:.0f} s", seconds=timeout or 0)
        return code


def _args(argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    args = [os.fspath(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    return args


@contextmanager
def _started(args: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
             unset: Collection[str] = (), on_abort: Callable[[], None] | None = None,
             **pipes) -> Iterator[subprocess.Popen[str]]:
    """Start ``args`` in a new session; whatever ends the ``with`` early stops its whole group."""
    full_env = ({k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
                if env or unset else None)
    with _live_lock:
        raise_if_stopping()  # cleanup while unwinding still runs
        try:
            proc = subprocess.Popen(args, cwd=cwd, env=full_env, text=True, errors="replace",
                                    start_new_session=True, **pipes)
        except FileNotFoundError as exc:
            raise ToolError(f"{args[0]} is not installed or not on PATH",
                            fix=f"install {Path(args[0]).name}") from exc
        _live[proc] = on_abort
    try:
        yield proc
        if proc.pid in _stopped:
            raise Interrupted  # stopping() ended it: not the tool's failure
    except BaseException:
        if proc.pid not in _stopped:
            try:
                if on_abort is not None:
                    on_abort()
            finally:
                _stop(proc)
        raise
    finally:
        with _live_lock:
            del _live[proc]
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()


def _stop(*procs: subprocess.Popen[str]) -> None:
    """SIGTERM to each child's process group, SIGKILL to what is left of them
    after the grace time (the docker CLI runs buildx as a child of its own).
    The groups are stopped side by side: one grace time in all."""
    live = []
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            live.append(proc)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while live and time.monotonic() < deadline:
        for proc in list(live):
            proc.poll()  # reap the leader, or the group never empties
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                live.remove(proc)
        if live:
            time.sleep(0.05)
    for proc in live:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        proc.wait()
