"""Reading a uv project from disk: pyproject.toml, uv.lock, workspace members.

This is the only I/O before planning; what it returns is plain frozen data."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raybake.errors import ProjectError


@dataclass(frozen=True)
class Member:
    """A uv workspace member other than the root: only its pyproject.toml matters."""

    path: str  # relative to the project root, POSIX
    name: str
    pyproject: dict[str, Any] = field(compare=False)


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    pyproject: dict[str, Any] = field(compare=False, repr=False)
    lock_bytes: bytes = field(repr=False)
    members: tuple[Member, ...] = ()
    python_version_file: str | None = None  # contents of .python-version, if any

    @property
    def tool_config(self) -> dict[str, Any]:
        return self.pyproject.get("tool", {}).get("raybake", {})


def canonicalize_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{path} is not valid TOML: {exc}",
                           fix=f"correct the syntax at the position named in {path.name}") from exc


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding a pyproject.toml."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / "pyproject.toml").is_file():
            return d
    raise ProjectError(f"no pyproject.toml in {start} or any parent directory",
                       fix="run raybake inside a uv project, or pass --project DIR "
                           "(create one with `uv init`)")


def load_project(start: Path) -> Project:
    root = find_root(start)
    pyproject = read_toml(root / "pyproject.toml")
    name = pyproject.get("project", {}).get("name")
    if not isinstance(name, str) or not name:
        raise ProjectError(f"{root / 'pyproject.toml'} has no [project].name",
                           fix="add `name = \"...\"` under [project]")
    lock_path = root / "uv.lock"
    try:
        lock_bytes = lock_path.read_bytes()
    except FileNotFoundError:
        raise ProjectError(f"{lock_path} does not exist",
                           fix=f"run `uv lock` in {root} and commit uv.lock") from None
    pv = root / ".python-version"
    return Project(
        root=root,
        name=canonicalize_name(name),
        pyproject=pyproject,
        lock_bytes=lock_bytes,
        members=tuple(_members(root, pyproject)),
        python_version_file=pv.read_text().strip() if pv.is_file() else None,
    )


def _members(root: Path, pyproject: dict[str, Any]) -> list[Member]:
    ws = pyproject.get("tool", {}).get("uv", {}).get("workspace", {})
    excluded = {p.resolve() for pat in ws.get("exclude", []) for p in root.glob(pat)}
    found: dict[str, Member] = {}
    for pattern in ws.get("members", []):
        for d in sorted(root.glob(pattern)):
            if d.resolve() in excluded or d.resolve() == root or not (d / "pyproject.toml").is_file():
                continue
            rel = d.relative_to(root).as_posix()
            data = read_toml(d / "pyproject.toml")
            found[rel] = Member(rel, canonicalize_name(data.get("project", {}).get("name", rel)), data)
    return [found[k] for k in sorted(found)]
