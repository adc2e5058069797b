"""uv: the binary raybake copies into images, and lock checks on the host."""

from __future__ import annotations

import hashlib
import platform
import re
import sys
from functools import cache
from importlib.metadata import version
from pathlib import Path

from raybake.errors import LockOutOfDate, NoInterpreter, ProjectError, ToolError
from raybake.paths import cache_dir
from raybake.project import Project
from raybake.tools.run import run


@cache
def uv_version() -> str:
    """Version of the uv wheel raybake depends on; its binary goes into images."""
    return version("uv")


@cache
def uv_bin() -> Path:
    import uv  # the PyPI wheel ships the binary

    return Path(uv.find_uv_bin())


def lock_check(project: Project) -> None:
    """Fail unless uv.lock is up to date with pyproject.toml (and every member's).

    ``--offline``: a current lock is decided from local files alone, which keeps
    this usable in pre-commit hooks. The answer depends only on those files and
    uv's version, so a passing check is remembered by their digest: a source
    edit costs nothing.

    uv needs some interpreter that satisfies requires-python to run the check,
    but the answer does not depend on which: ``.python-version`` (a developer's
    exact patch release, often not installed here) is not asked for."""
    memo = lock_memo(project)
    if memo.exists():
        return
    proc = run([uv_bin(), *lock_check_args(_check_interpreter(project.requires_python))],
               cwd=project.root, check=False, timeout=120)
    lock_verdict(project, proc.returncode, proc.stderr or proc.stdout)
    remember_lock_check(memo)


def lock_memo(project: Project) -> Path:
    """Where a passing check of exactly these files (and this uv) is remembered."""
    files = [project.root / "pyproject.toml", project.root / "uv.lock",
             *(project.root / p.path / "pyproject.toml" for p in project.local_packages if p.pyproject)]
    h = hashlib.sha256(uv_version().encode())
    for f in files:
        h.update(f.read_bytes())
    return cache_dir() / "lock-checks" / h.hexdigest()


def remember_lock_check(memo: Path) -> None:
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.touch()


def lock_check_args(python: str) -> list[str]:
    """`uv lock --check` from local files alone with ``python`` (a path or a
    version request) as the interpreter; never downloads one."""
    return ["lock", "--check", "--offline", "--no-progress", "--no-python-downloads", "--python", python]


def lock_verdict(project: Project, returncode: int, output: str, *, where: str = "on this machine") -> None:
    """Raise what a `uv lock --check` that ended with ``returncode`` means.

    uv exits 1 when it compared and the lock is stale, 2 when it stopped
    before comparing (no interpreter, unreadable files): never "out of date"."""
    if returncode == 0:
        return
    requires = project.requires_python
    detail = "\n".join(line for line in output.strip().splitlines() if not line.startswith("Using "))
    if "Failed to parse `uv.lock`" in detail:
        raise ProjectError(f"{project.root / 'uv.lock'} is not a valid lock file:\n{detail}",
                           fix="resolve merge conflicts in it, or regenerate it with `uv lock`")
    if returncode == 1:
        raise LockOutOfDate(
            f"{project.root / 'uv.lock'} is out of date with pyproject.toml:\n{detail}",
            fix=f"run `uv lock` in {project.root} and commit uv.lock")
    if "interpreter" in detail.lower():
        raise NoInterpreter(
            f"could not check {project.root / 'uv.lock'} against pyproject.toml: uv found no Python "
            f"{where} that satisfies requires-python {requires or '(any)'}:\n{detail}",
            fix=f"install one (`uv python install {_lowest(requires)}`) or put it on PATH")
    raise ToolError(f"could not check {project.root / 'uv.lock'} against pyproject.toml:\n{detail}",
                    fix="fix what uv reports above")


def _check_interpreter(requires: str | None) -> str:
    """raybake's own interpreter when it satisfies requires-python (no search at
    all), else the requirement itself for uv to find among installed ones."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    here = platform.python_version()
    try:
        if not requires or here in SpecifierSet(requires):
            return sys.executable
    except InvalidSpecifier:
        return sys.executable  # uv reports the bad requires-python itself
    return requires


def _lowest(requires: str | None) -> str:
    m = re.search(r"(\d+\.\d+)", requires or "")
    return m.group(1) if m else "3"


def export_requirements(project: Project, args: tuple[str, ...]) -> str:
    """The lock's selection (``args``: uv's selection flags) as requirements.txt
    lines with markers and hashes, from the lock alone (no network)."""
    return run([uv_bin(), "export", "--frozen", "--no-header", "--no-annotate", "--format", "requirements-txt",
                "--no-progress", *args], cwd=project.root, timeout=120).stdout
