"""What the lock's sources for a spec's selection mean for its build, told
before it runs (pure): a source on this machine's loopback the build cannot
reach, an index the project no longer declares, a package with no wheel for
the image (uv then builds its sdist there)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from raybake.errors import BuildError, ProjectError
from raybake.lockfile import LockedPackage, LockFile
from raybake.project import Project
from raybake.spec import ImageSpec

PYPI = "https://pypi.org/simple"
_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/ppc64le": "ppc64le",
         "linux/s390x": "s390x", "linux/arm/v7": "armv7l"}
COMPILER_APT = ("build-essential", "python3-dev")


def normalized_url(url: str) -> str:
    """An index URL as compared: no credentials, lowercase scheme and host, no trailing slash."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme.lower()}://{host.lower()}{parts.path.rstrip('/')}"


def on_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _upgrade_fix(names: Collection[str]) -> str:
    return "uv lock " + " ".join(f"--upgrade-package {n}" for n in sorted(names))


def _urls(package: LockedPackage) -> list[str]:
    """Where uv fetches ``package`` from: its registry, URL or git source, and its files."""
    urls = [v for k, v in package.source if k in ("registry", "url", "git")]
    return urls + [u for u, _ in package.wheel_sizes if "://" in u]


def check_reachable(spec: ImageSpec, lock: LockFile, selected: Collection[str]) -> None:
    """Refuse a selected package the lock fetches from this machine's loopback
    (localhost, 127.0.0.1: a mirror or proxy where the lock was made) unless
    the build shares this machine's network (`network: host`): inside the build
    that address is the build container's own."""
    if spec.network == "host":
        return
    found = {p.name: url for p in lock.packages if p.name in selected
             for url in _urls(p)[:1] if on_loopback(url)}
    if found:
        listed = ", ".join(f"{name} ({url})" for name, url in sorted(found.items()))
        raise ProjectError(
            f"{spec.source}: uv.lock fetches {listed} from this machine's loopback, which the build "
            "cannot reach (inside it, that address is the build's own)",
            fix=f"lock them again from an index the build can reach: `{_upgrade_fix(found)}` (with the "
                "project's indexes reachable, and no UV_INDEX_URL/UV_DEFAULT_INDEX pointing at the local one), "
                "or build on this machine's network with `network: host`")


def undeclared_indexes(project: Project, lock: LockFile, selected: Collection[str],
                       environ: Mapping[str, str]) -> str | None:
    """A warning naming the selected packages locked from an index that neither
    the project (pyproject.toml, uv.toml) nor uv's index variables here declare
    any longer: the build fetches them from there, with no credentials for it."""
    declared = {normalized_url(PYPI), *(normalized_url(url) for _, url in project.declared_indexes())}
    for variable in ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL"):
        for entry in environ.get(variable, "").split():
            declared.add(normalized_url(entry.split("=", 1)[1] if "=" in entry.split("://", 1)[0] else entry))
    found: dict[str, str] = {}
    for package in lock.packages:
        registry = dict(package.source).get("registry")
        if package.name in selected and registry and "://" in registry and normalized_url(registry) not in declared:
            found[package.name] = registry
    if not found:
        return None
    listed = ", ".join(f"{name} ({url})" for name, url in sorted(found.items()))
    return (f"uv.lock fetches {listed} from an index the project no longer declares; if the build cannot "
            f"reach it, lock them again from the project's indexes: `{_upgrade_fix(found)}`")


def target_markers(platform: str, python: str) -> dict[str, str]:
    """The environment markers of a CPython ``python`` (X.Y.Z) on Linux ``platform``."""
    return {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": _ARCH.get(platform, platform.rsplit("/", 1)[-1]),
            "python_version": ".".join(python.split(".")[:2]), "python_full_version": python,
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "implementation_version": python, "platform_release": "", "platform_version": ""}


def target_tags(platform: str, python: str) -> frozenset[Tag]:
    """The wheel tags a CPython ``python`` (X.Y[.Z]) on a glibc Linux ``platform`` installs."""
    arch = _ARCH.get(platform, platform.rsplit("/", 1)[-1])
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(40, 4, -1)]
    platforms += [f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    version = tuple(int(x) for x in python.split(".")[:2])
    return frozenset([*cpython_tags(version, platforms=platforms),
                      *compatible_tags(version, f"cp{version[0]}{version[1]}", platforms=platforms)])


def _has_wheel_for(package: LockedPackage, tags: frozenset[Tag]) -> bool:
    for url, _ in package.wheel_sizes:
        try:
            _, _, _, wheel_tags = parse_wheel_filename(url.rsplit("/", 1)[-1].split("#", 1)[0])
        except InvalidWheelFilename:
            continue
        if wheel_tags & tags:
            return True
    return False


def sdist_builds(spec: ImageSpec, lock: LockFile, selected: Collection[str], python: str) -> str | None:
    """A warning naming the selected registry packages that have no wheel for the
    image's platform and Python in the lock: uv builds them from their sdist in
    the image, which needs a compiler for C code (slim bases have none)."""
    if "build-essential" in spec.apt_packages:
        return None
    tags = target_tags(spec.platform, python)
    names = sorted(f"{p.name} {p.version}" for p in lock.packages
                   if p.name in selected and p.source_kind == "registry" and p.sdist_size
                   and not _has_wheel_for(p, tags))
    if not names:
        return None
    return (f"{', '.join(names)}: no wheel for {spec.platform} and Python {'.'.join(python.split('.')[:2])} in "
            f"uv.lock, so uv builds {'it' if len(names) == 1 else 'them'} from source in the image; a build with C "
            f"code needs a compiler: add `apt_packages: [{', '.join(COMPILER_APT)}]` to {spec.source}")


_REFUSED = re.compile(r"\b(401 Unauthorized|403 Forbidden)\b")
_URL = re.compile(r"""https?://[^\s'"`()<>]+""")
_GIT_UNREACHABLE = re.compile(r"fatal: unable to access '([^']+)': *([^\n]*)")
GIT_CONFIG_ROUTE = ("GIT_CONFIG_COUNT=1, GIT_CONFIG_KEY_0=url.https://x-access-token:TOKEN@HOST/.insteadOf, "
                    "GIT_CONFIG_VALUE_0=https://HOST/ set here and listed in index_secrets")


def explain_build_failure(project: Project, spec: ImageSpec, error: BuildError) -> BuildError:
    """``error`` with the fix its uv output points at: an index that refused
    (401/403) named with the variables that carry its credentials, a git host
    that could not be reached named as such. Else ``error`` itself."""
    text = error.message
    if git := _GIT_UNREACHABLE.search(text):
        host = urlsplit(git.group(1)).netloc.rsplit("@", 1)[-1]
        return BuildError(
            f"{text}\nthe git host {host} could not be reached from the build ({git.group(2).strip()})",
            fix=f"check that the build reaches {host} (network: host, a proxy, ca_bundle); for a private git host "
                f"pass credentials as the README's Git sources say: {GIT_CONFIG_ROUTE.replace('HOST', host)}")
    refused = _REFUSED.search(text)
    if refused is None:
        return error
    indexes = project.declared_indexes()
    for url in _URL.findall(text):
        matches = [(name, index) for name, index in indexes if _same_host(url, index)]
        if not matches:
            continue
        name, index = max(matches, key=lambda m: len(_common_prefix(url, m[1])))
        if name is None:
            fix = (f"name the index in pyproject.toml (`[[tool.uv.index]] name = \"NAME\"`, url = \"{index}\") "
                   "and set UV_INDEX_NAME_USERNAME and UV_INDEX_NAME_PASSWORD here, listed in index_secrets "
                   f"of {spec.source}")
            which = index
        else:
            variables = [f"UV_INDEX_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}_{part}"
                         for part in ("USERNAME", "PASSWORD")]
            unset = [v for v in variables if v not in spec.index_secrets]
            fix = (f"set {' and '.join(variables)} here and list them in index_secrets of {spec.source}"
                   + (f" (it lacks {', '.join(unset)})" if unset else " (check that they are set and right)"))
            which = f"'{name}' ({index})"
        return BuildError(f"{text}\nthe package index {which} refused the build's request "
                          f"(HTTP {refused.group(1)}): the build's credentials for it are missing or wrong", fix=fix)
    return error


def _same_host(url: str, index: str) -> bool:
    a, b = urlsplit(url), urlsplit(index)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _common_prefix(url: str, index: str) -> str:
    return os.path.commonprefix([urlsplit(url).path, urlsplit(index).path])
