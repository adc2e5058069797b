"""The one reader of ``uv.lock``.

``lock_header`` reads the format version and requires-python from the first
few KB without parsing the file (cheap enough for `raybake tag` and the
pre-commit hooks); ``parse_lock`` reads the packages, only when an image's
recipe is made."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name

from raybake.errors import ProjectError

SUPPORTED_LOCK_VERSION = 1  # uv.lock `version` the bundled uv reads


@dataclass(frozen=True)
class LockHeader:
    version: int | None
    requires_python: str | None


@dataclass(frozen=True)
class LockedDependency:
    name: str  # canonical
    extras: tuple[str, ...] = ()


Dependencies = tuple[LockedDependency, ...]


@dataclass(frozen=True)
class LockedPackage:
    name: str  # canonical
    version: str | None
    source: tuple[tuple[str, str], ...]  # e.g. (("registry", URL),), (("git", URL),), (("editable", "libs/a"),)
    wheel_sizes: tuple[tuple[str, int], ...]  # (url or filename, size)
    sdist_size: int
    hashes: frozenset[str] = frozenset()  # "sha256:..." of its wheels and sdist
    dependencies: Dependencies = ()
    optional_dependencies: tuple[tuple[str, Dependencies], ...] = ()  # (extra, its dependencies)
    dependency_groups: tuple[tuple[str, Dependencies], ...] = ()  # uv's dev-dependencies: (group, ...)

    @property
    def source_kind(self) -> str:
        return self.source[0][0] if self.source else "registry"

    @property
    def source_path(self) -> str | None:
        """The project-relative path of a local (editable/directory/virtual/path) package."""
        kind = self.source_kind
        return dict(self.source)[kind] if kind in ("editable", "directory", "virtual", "path") else None


@dataclass(frozen=True)
class LockFile:
    header: LockHeader
    packages: tuple[LockedPackage, ...]
    members: tuple[str, ...]  # [manifest] members: workspace member names (canonical)

    def package(self, name: str) -> LockedPackage | None:
        name = canonicalize_name(name)
        return next((p for p in self.packages if p.name == name), None)


_HEADER_VERSION = re.compile(rb"^version\s*=\s*(\d+)\s*$", re.M)
_HEADER_REQUIRES = re.compile(rb'^requires-python\s*=\s*"([^"]*)"\s*$', re.M)


def lock_header(lock_bytes: bytes) -> LockHeader:
    head = lock_bytes[:4096]
    version = _HEADER_VERSION.search(head)
    requires = _HEADER_REQUIRES.search(head)
    return LockHeader(int(version.group(1)) if version else None,
                      requires.group(1).decode() if requires else None)


def parse_lock(lock_bytes: bytes, where: str = "uv.lock") -> LockFile:
    try:
        data = tomllib.loads(lock_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{where} is not a valid lock file: {exc}",
                           fix="resolve merge conflicts in it, or regenerate it with `uv lock`") from exc
    packages = tuple(_package(p) for p in data.get("package", []) if isinstance(p, dict) and "name" in p)
    members = tuple(canonicalize_name(m) for m in data.get("manifest", {}).get("members", []))
    return LockFile(lock_header(lock_bytes), packages, members)


def _package(pkg: dict[str, Any]) -> LockedPackage:
    source = pkg.get("source", {})
    wheels = tuple((w.get("url") or w.get("filename") or w.get("path") or "", int(w.get("size", 0)))
                   for w in pkg.get("wheels", []))
    return LockedPackage(
        name=canonicalize_name(pkg["name"]),
        version=pkg.get("version"),
        source=tuple((str(k), str(v)) for k, v in source.items()) if isinstance(source, dict) else (),
        wheel_sizes=wheels,
        sdist_size=int(pkg.get("sdist", {}).get("size", 0)),
        hashes=frozenset(str(a["hash"]) for a in (*pkg.get("wheels", []), pkg.get("sdist", {}))
                         if isinstance(a, dict) and a.get("hash")),
        dependencies=_dependencies(pkg.get("dependencies", [])),
        optional_dependencies=tuple((k, _dependencies(v)) for k, v in pkg.get("optional-dependencies", {}).items()),
        dependency_groups=tuple((k, _dependencies(v)) for k, v in pkg.get("dev-dependencies", {}).items()),
    )


def _dependencies(entries: list[Any]) -> Dependencies:
    return tuple(LockedDependency(canonicalize_name(d["name"]), tuple(d.get("extra", ())))
                 for d in entries if isinstance(d, dict) and "name" in d)
