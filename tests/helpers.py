"""Helpers for tests: run the real raybake and docker commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# A base image digest for pure planning tests (no engine to resolve one).
BASE_DIGEST = "sha256:" + "b" * 64


def raybake(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the real `raybake` console script."""
    exe = Path(sys.executable).parent / "raybake"
    proc = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"raybake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def billion_laughs(depth: int = 9) -> str:
    """An image spec whose `python` expands to 9**depth strings through nested
    YAML aliases (under 600 bytes)."""
    names = "abcdefghijk"
    lines = ["python:", '  - &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  - &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * 9) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def processes_mentioning(needle: str) -> list[str]:
    """Command lines of running processes that mention ``needle``."""
    from pathlib import Path

    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in text:
            found.append(text)
    return found
