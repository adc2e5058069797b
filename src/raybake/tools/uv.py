"""uv: the binary raybake copies into images, and lock checks on the host."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.metadata import version
from pathlib import Path

from raybake.errors import LockOutOfDate, ProjectError
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
    edit costs nothing."""
    files = [project.root / "pyproject.toml", project.root / "uv.lock",
             *(project.root / m.path / "pyproject.toml" for m in project.members)]
    h = hashlib.sha256(uv_version().encode())
    for f in files:
        h.update(f.read_bytes())
    memo = cache_dir() / "lock-checks" / h.hexdigest()
    if memo.exists():
        return
    proc = run([uv_bin(), "lock", "--check", "--offline", "--no-progress"],
               cwd=project.root, check=False, timeout=120)
    if proc.returncode != 0:
        detail = "\n".join(line for line in (proc.stderr or proc.stdout).strip().splitlines()
                           if not line.startswith("Using "))
        if "Failed to parse `uv.lock`" in detail:
            raise ProjectError(f"{project.root / 'uv.lock'} is not a valid lock file:\n{detail}",
                               fix="resolve merge conflicts in it, or regenerate it with `uv lock`")
        raise LockOutOfDate(
            f"{project.root / 'uv.lock'} is out of date with pyproject.toml:\n{detail}",
            fix=f"run `uv lock` in {project.root} and commit uv.lock")
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.touch()


def export_requirements(project: Project, selection: tuple[str, ...], *, hashes: bool = False) -> str:
    """The lock's selection as requirements.txt lines with markers (no network)."""
    args = [uv_bin(), "export", "--frozen", "--no-emit-project", "--no-header",
            "--no-annotate", "--format", "requirements-txt", "--no-progress"]
    if not hashes:
        args.append("--no-hashes")
    if project.members:
        args.append("--no-emit-workspace")
    return run([*args, *selection], cwd=project.root, timeout=120).stdout
