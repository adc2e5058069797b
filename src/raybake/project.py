"""Reading a uv project from disk: pyproject.toml, uv.lock, workspace members,
and local path packages.

This is the only I/O before planning; what it returns is plain frozen data."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.utils import canonicalize_name

from raybake.errors import ProjectError
from raybake.lockfile import lock_header


@dataclass(frozen=True)
class LocalPackage:
    """A package of the project's own tree that ships through working_dir and is
    never installed in the image: a workspace member, or a directory named by
    a path source (``foo = { path = "schemas" }``) that is not a member."""

    path: str  # relative to the project root, POSIX
    name: str  # canonical distribution name
    pyproject: dict[str, Any] = field(compare=False, repr=False)
    member: bool = True  # False: a path source


@dataclass(frozen=True)
class PathArtifact:
    """A path source naming a wheel or sdist file in the tree: installed from it."""

    path: str  # relative to the project root, POSIX
    name: str


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    pyproject: dict[str, Any] = field(compare=False, repr=False)
    lock_bytes: bytes = field(repr=False)
    members: tuple[LocalPackage, ...] = ()  # workspace members other than the root
    path_packages: tuple[LocalPackage, ...] = ()  # path-source directories that are not members
    path_artifacts: tuple[PathArtifact, ...] = ()
    python_version_file: str | None = None  # contents of .python-version, if any
    virtual: bool = False  # the root has no [project] table (a virtual workspace root)

    @property
    def tool_config(self) -> dict[str, Any]:
        return self.pyproject.get("tool", {}).get("raybake", {})

    @property
    def local_packages(self) -> tuple[LocalPackage, ...]:
        """Members and path packages: everything of the tree that ships as source."""
        return (*self.members, *self.path_packages)

    @property
    def requires_python(self) -> str | None:
        """The lock's requires-python (uv intersects the members'), else the root's."""
        return (lock_header(self.lock_bytes).requires_python
                or self.pyproject.get("project", {}).get("requires-python"))

    def python_roots(self) -> tuple[str, ...]:
        """Relative directories to put on PYTHONPATH so that the project's own
        packages import from working_dir: each local package's import root
        (``src/``, or the package's own directory for a flat layout). The
        working_dir itself is on sys.path already."""
        nested = {p.path for p in self.local_packages}
        roots = [] if self.virtual else [r for r in _import_roots(self.root, "", self.pyproject, nested) if r != "."]
        for package in self.local_packages:
            roots += _import_roots(self.root, package.path, package.pyproject, nested)
        return tuple(dict.fromkeys(roots))

    @property
    def root_has_dependencies(self) -> bool:
        table = self.pyproject.get("project", {})
        return bool(table.get("dependencies") or table.get("optional-dependencies"))


def _import_roots(root: Path, rel: str, pyproject: dict[str, Any], packages: set[str]) -> list[str]:
    """Where the packages of the local package at ``rel`` import from: the build
    backend's own settings when it has them (hatch's wheel packages,
    setuptools' package-dir and find.where), else ``src/`` when it holds Python
    code, else the package's directory."""
    base = PurePosixPath(rel) if rel else PurePosixPath(".")
    tool = pyproject.get("tool", {})
    declared: list[PurePosixPath] = []
    for pkg in tool.get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {}).get("packages", []):
        declared.append((base / pkg).parent)
    setuptools = tool.get("setuptools", {})
    package_dir = setuptools.get("package-dir", {})
    if isinstance(package_dir, dict) and isinstance(package_dir.get(""), str):
        declared.append(base / package_dir[""])
    found = setuptools.get("packages", {})
    if isinstance(found, dict):
        declared += [base / w for w in found.get("find", {}).get("where", [])]
    if declared:
        return [d.as_posix() for d in declared]
    if _holds_python(root, base / "src", packages):
        return [(base / "src").as_posix()]
    return [base.as_posix()]


def _holds_python(root: Path, rel: PurePosixPath, packages: set[str]) -> bool:
    """A .py file in ``rel``, or a package directory in it that is not itself one
    of the project's local packages (a root ``src/`` holding members is no import root)."""
    d = root / rel
    if not d.is_dir():
        return False
    for entry in d.iterdir():
        if entry.is_file() and entry.suffix == ".py":
            return True
        if (entry.is_dir() and not entry.name.startswith((".", "_"))
                and (rel / entry.name).as_posix() not in packages
                and any(f.suffix == ".py" for f in entry.iterdir() if f.is_file())):
            return True
    return False


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
    table = pyproject.get("project")
    virtual = table is None and "workspace" in pyproject.get("tool", {}).get("uv", {})
    name = root.name if virtual else (table or {}).get("name")
    if not isinstance(name, str) or not name:
        raise ProjectError(f"{root / 'pyproject.toml'} has no [project].name",
                           fix="add `name = \"...\"` under [project]")
    lock_path = root / "uv.lock"
    try:
        lock_bytes = lock_path.read_bytes()
    except FileNotFoundError:
        raise ProjectError(f"{lock_path} does not exist",
                           fix=f"run `uv lock` in {root} and commit uv.lock") from None
    members = _members(root, pyproject)
    packages, artifacts = _path_sources(root, pyproject, members)
    return Project(
        root=root,
        name=str(canonicalize_name(name)),
        pyproject=pyproject,
        lock_bytes=lock_bytes,
        members=tuple(members),
        path_packages=packages,
        path_artifacts=artifacts,
        python_version_file=_python_version_file(root / ".python-version"),
        virtual=virtual,
    )


def _python_version_file(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise ProjectError(f"{path} is not UTF-8 text",
                           fix='write the Python version as plain text, e.g. "3.11"') from None
    # uv reads the first non-comment line.
    return next((ln for ln in lines if ln and not ln.startswith("#")), None)


def _inside(root: Path, path: Path) -> str | None:
    """``path`` relative to ``root`` (POSIX) when it lies inside, else None."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def _members(root: Path, pyproject: dict[str, Any]) -> list[LocalPackage]:
    ws = pyproject.get("tool", {}).get("uv", {}).get("workspace", {})
    excluded = {p.resolve() for pat in ws.get("exclude", []) for p in _glob(root, pat)}
    found: dict[str, LocalPackage] = {}
    for pattern in ws.get("members", []):
        for d in sorted(_glob(root, pattern)):
            if d.resolve() in excluded or d.resolve() == root.resolve() or not (d / "pyproject.toml").is_file():
                continue
            rel = _inside(root, d)
            if rel is None:
                raise ProjectError(
                    f"workspace member {d} (from members = {pattern!r}) lies outside the project {root}",
                    fix="raybake ships members as source in working_dir, which holds only the project tree: "
                        "move the member inside it")
            data = read_toml(d / "pyproject.toml")
            name = data.get("project", {}).get("name", PurePosixPath(rel).name)
            found[rel] = LocalPackage(rel, str(canonicalize_name(name)), data)
    return [found[k] for k in sorted(found)]


def _glob(root: Path, pattern: str) -> list[Path]:
    if pattern.startswith("/") or PurePosixPath(pattern).is_absolute():
        raise ProjectError(f"workspace pattern {pattern!r} is an absolute path",
                           fix="write workspace members relative to the project root, e.g. \"libs/*\"")
    return list(root.glob(pattern))


def _path_sources(root: Path, pyproject: dict[str, Any],
                  members: list[LocalPackage]) -> tuple[tuple[LocalPackage, ...], tuple[PathArtifact, ...]]:
    """Path sources of the root and of every member, relative to the file declaring them."""
    member_paths = {m.path for m in members}
    declared = [(root, pyproject), *((root / m.path, m.pyproject) for m in members)]
    packages: dict[str, LocalPackage] = {}
    artifacts: dict[str, PathArtifact] = {}
    for base, data in declared:
        for dep, entries in data.get("tool", {}).get("uv", {}).get("sources", {}).items():
            for entry in entries if isinstance(entries, list) else [entries]:
                if not isinstance(entry, dict) or "path" not in entry:
                    continue
                target = base / entry["path"]
                rel = _inside(root, target)
                if rel is None:
                    raise ProjectError(
                        f"the path source {dep} = {{ path = {entry['path']!r} }} in "
                        f"{base / 'pyproject.toml'} points outside the project ({target.resolve()})",
                        fix="raybake ships local packages through working_dir, which holds only the project "
                            "tree: move it inside the project (e.g. as a workspace member), or publish it "
                            "to a package index and depend on it by version")
                if rel in member_paths:
                    continue
                if target.is_dir():
                    data_ = read_toml(target / "pyproject.toml") if (target / "pyproject.toml").is_file() else {}
                    packages[rel] = LocalPackage(rel, str(canonicalize_name(dep)), data_, member=False)
                else:
                    artifacts[rel] = PathArtifact(rel, str(canonicalize_name(dep)))
    return (tuple(packages[k] for k in sorted(packages)), tuple(artifacts[k] for k in sorted(artifacts)))
