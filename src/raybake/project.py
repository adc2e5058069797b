"""Reading a uv project from disk: pyproject.toml, uv.lock, workspace members,
and local path packages.

This is the only I/O before planning; what it returns is plain frozen data."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection
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

    def python_roots(self, selected: Collection[str] | None = None) -> tuple[str, ...]:
        """Relative directories to put on PYTHONPATH so that the project's own
        packages import from working_dir: each local package's import root
        (see _import_roots). ``selected``: the names of the local packages an
        image's selection holds (plan.selected_local_packages); None: all of
        them. The working_dir itself is on sys.path already."""
        nested = {p.path for p in self.local_packages}
        roots = []
        if not self.virtual and (selected is None or self.name in selected):
            roots += [r for r in _import_roots(self.root, "", self.pyproject, nested) if r != "."]
        for package in self.local_packages:
            if selected is None or package.name in selected:
                roots += _import_roots(self.root, package.path, package.pyproject, nested)
        return tuple(dict.fromkeys(roots))

    def declared_indexes(self) -> tuple[tuple[str | None, str], ...]:
        """(name, URL) of every package index the project declares for uv: `[[tool.uv.index]]`,
        `index-url` and `extra-index-url` of the root's and members' pyproject.toml and of
        the root's uv.toml. The name is None for the unnamed ones."""
        uv_toml = self.root / "uv.toml"
        tables = [self.pyproject.get("tool", {}).get("uv", {}),
                  *(p.pyproject.get("tool", {}).get("uv", {}) for p in self.local_packages),
                  read_toml(uv_toml) if uv_toml.is_file() else {}]
        found: list[tuple[str | None, str]] = []
        for table in tables:
            found += [(i.get("name"), i["url"]) for i in _list(table.get("index"))
                      if isinstance(i, dict) and isinstance(i.get("url"), str)]
            found += [(None, u) for u in [table.get("index-url"), *_list(table.get("extra-index-url"))]
                      if isinstance(u, str)]
        return tuple(dict.fromkeys(found))

    @property
    def root_has_dependencies(self) -> bool:
        table = self.pyproject.get("project", {})
        return bool(table.get("dependencies") or table.get("optional-dependencies"))


def _import_roots(root: Path, rel: str, pyproject: dict[str, Any], packages: set[str]) -> list[str]:
    """Where the packages of the local package at ``rel`` import from: the build
    backend's own settings when it has them (_declared_roots), else ``src/``
    when it holds Python code, else the package's directory."""
    base = PurePosixPath(rel) if rel else PurePosixPath(".")
    declared = _declared_roots(root / base, pyproject)
    if declared:
        return list(dict.fromkeys((base / d).as_posix() for d in declared))
    if _holds_python(root, base / "src", packages):
        return [(base / "src").as_posix()]
    return [base.as_posix()]


def _declared_roots(directory: Path, pyproject: dict[str, Any]) -> list[str]:
    """The import roots, relative to the package's ``directory``, that its build
    backend's settings name: uv_build's module-root, Poetry's packages `from`,
    PDM's package-dir, maturin's python-source, flit's module (in src/ or not),
    hatch's wheel packages and sources, setuptools' package-dir and
    packages.find.where."""
    tool = pyproject.get("tool", {})
    backend = pyproject.get("build-system", {}).get("build-backend", "")
    roots: list[str] = []
    uv_build = tool.get("uv", {}).get("build-backend")
    if isinstance(uv_build, dict) or backend == "uv_build":
        module_root = (uv_build or {}).get("module-root", "src")  # uv_build's default
        roots.append(module_root if isinstance(module_root, str) and module_root else ".")
    for entry in _list(tool.get("poetry", {}).get("packages")):
        if isinstance(entry, dict) and "include" in entry:
            roots.append(str(entry.get("from") or "."))
    for setting in (tool.get("pdm", {}).get("build", {}).get("package-dir"),
                    tool.get("maturin", {}).get("python-source")):
        if isinstance(setting, str):
            roots.append(setting or ".")
    if backend.startswith("flit") or "flit" in tool:
        module = tool.get("flit", {}).get("module", {}).get("name") or pyproject.get("project", {}).get("name", "")
        top = str(module).split(".")[0].replace("-", "_")
        roots.append("src" if top and (directory / "src" / top).exists() else ".")
    hatch = tool.get("hatch", {}).get("build", {})
    wheel = hatch.get("targets", {}).get("wheel", {})
    roots += [PurePosixPath(p).parent.as_posix() for p in _list(wheel.get("packages")) if isinstance(p, str)]
    roots += _hatch_sources(wheel.get("sources", hatch.get("sources")))
    setuptools = tool.get("setuptools", {})
    package_dir = setuptools.get("package-dir", {})
    for package, path in (package_dir.items() if isinstance(package_dir, dict) else ()):
        if isinstance(path, str) and package == "":
            roots.append(path or ".")
        elif isinstance(path, str) and "." not in package and PurePosixPath(path).name == package:
            roots.append(PurePosixPath(path).parent.as_posix())  # {pkg = "lib/pkg"}: imports from lib/
    found = setuptools.get("packages", {})
    if isinstance(found, dict):
        roots += [str(w) for w in _list(found.get("find", {}).get("where")) if isinstance(w, str)]
    return roots


def _hatch_sources(sources: Any) -> list[str]:
    """hatch's ``sources``: a list of prefixes stripped from the wheel's paths, or
    a {prefix: replacement} table; a prefix that only drops its leading
    directories (``"src/pkg" = "pkg"``, ``"lib" = ""``) is an import root."""
    if isinstance(sources, list):
        return [PurePosixPath(s).as_posix() for s in sources if isinstance(s, str)]
    roots = []
    for prefix, replacement in (sources.items() if isinstance(sources, dict) else ()):
        path = PurePosixPath(prefix)
        if replacement == "":
            roots.append(path.as_posix())
        elif isinstance(replacement, str) and path.as_posix().endswith("/" + replacement.strip("/")):
            roots.append(path.as_posix()[:-len(replacement.strip("/")) - 1])
    return roots


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


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
    """The nearest directory at or above ``start`` holding a pyproject.toml.

    ``start`` must be a directory: a mistyped one inside a project would
    otherwise silently mean the enclosing project."""
    if not start.is_dir():
        what = "is not a directory" if start.exists() else "does not exist"
        raise ProjectError(f"the project directory {start} {what}",
                           fix="check the path given to -C/--project (default: the current directory)")
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
    if (line := _conflict_marker_line(lock_bytes)) is not None:
        raise ProjectError(f"{lock_path} holds merge-conflict markers (line {line}): a merge left it half-merged",
                           fix=f"take one side (`git checkout --theirs uv.lock`, or --ours), then run `uv lock` "
                               f"in {root} to redo the resolution from pyproject.toml, and commit uv.lock")
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


_CONFLICT_MARKER = re.compile(rb"^(<{7} |={7}$|>{7} )", re.M)


def _conflict_marker_line(data: bytes) -> int | None:
    """The line of the first merge-conflict marker git writes (``<<<<<<< ``, ``=======``, ``>>>>>>> ``)."""
    m = _CONFLICT_MARKER.search(data)
    return None if m is None else data.count(b"\n", 0, m.start()) + 1


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
