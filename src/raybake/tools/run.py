"""The one place raybake starts a subprocess (Docker goes through python-on-whales)."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from raybake.errors import ToolError

log = logging.getLogger("raybake.run")


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, raise ``ToolError`` when it fails.

    ``env`` is added to the current environment, not a replacement for it."""
    args = [os.fspath(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{args[0]} is not installed or not on PATH",
                        fix=f"install {Path(args[0]).name}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{shlex.join(args)} did not finish within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise ToolError(f"{shlex.join(args)} failed (exit {proc.returncode}):\n"
                        f"{(proc.stderr or proc.stdout).strip()}")
    return proc
