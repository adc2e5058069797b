"""Splitting the dependency install into layers: heaviest, most stable lowest.

A single ``uv sync`` layer means one small new package re-installs and
re-exports the whole environment. Lower layers here install fixed sets of
locked wheels (``uv pip install --no-deps --require-hashes`` of a generated
requirements file); the file's bytes only change when one of its packages
does, so BuildKit reuses the layer otherwise. The top layer is the usual
``uv sync --frozen``, which installs the rest and makes the environment
exactly the lock. Pure: the caller supplies uv's export and the lock text.

Which packages a pinned layer may install is decided per package from the
lock: one from PyPI, or from an index the project declares, is installed
from that index alone (``--default-index``), with the secrets named for that
index (``UV_INDEX_<NAME>_*``) and no others; a requirement whose markers
exclude the image (a torch index only for ``sys_platform != 'linux'``) is
left out with its source. Anything else (git, URL, path, find-links, a local
directory index, an index whose URL carries credentials or that only the
environment names)
stays in the final ``uv sync``, which knows the project's configuration.

Each heavy package gets a layer of its own, largest lowest: changing one
rebuilds only its layer and those above it, and BuildKit compresses the
layers of a chain concurrently, which a single 600 MB layer cannot use.
The many small packages left for the top layer add up to a few MB, so a
small new dependency costs little to install, compress and unpack."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from raybake.lockfile import LockFile

MiB = 2**20
KiB = 2**10
# Wheel size (compressed, from uv.lock) from which a package gets its own layer,
# and from which it joins the shared medium layer instead of the top one.
HEAVY_FLOOR = 10 * MiB
MEDIUM_FLOOR = 100 * KiB
# At most this many layers hold heavy packages, whatever the lock: with the
# medium and sync layers, raybake's few own and a base image's (tens at most),
# an image stays well under the 127 layers overlayfs can stack. Past it, the
# largest half keep a layer each and the rest share the other half, in size order.
HEAVY_LAYER_BUDGET = 40
_REQ_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
_HASH = re.compile(r"--hash=(\S+)")
PYPI = "https://pypi.org/simple"


@dataclass(frozen=True)
class PackageIndex:
    """An index pyproject.toml declares: ``[[tool.uv.index]]`` (named), or
    ``[tool.uv]`` index-url / extra-index-url (unnamed)."""

    url: str
    name: str | None = None
    flat: bool = False  # format = "flat": a find-links page, not a simple index


@dataclass(frozen=True)
class IndexAccess:
    """How a pinned layer reaches its packages: uv's ``--default-index`` value
    (None: PyPI, uv's default) and the secrets that index needs."""

    default_index: str | None = None
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PinnedChoice:
    """One pinned layer: its name, packages, requirements text and index."""

    name: str
    packages: tuple[str, ...]
    requirements: str
    access: IndexAccess


def _arch(platform: str) -> str:
    return {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}.get(platform, platform.rsplit("/", 1)[-1])


def package_sizes(lock: LockFile, platform: str) -> dict[str, int]:
    """Each locked package's size: its largest wheel for this platform's
    architecture (or pure-Python wheel), else its sdist."""
    arch = _arch(platform)
    return {pkg.name: max((size for url, size in pkg.wheel_sizes if arch in url or "-none-any" in url),
                          default=pkg.sdist_size)
            for pkg in lock.packages}


def image_markers(platform: str, python: str) -> dict[str, str]:
    """The marker environment of the image's interpreter (Linux, the platform's
    machine, the base image's CPython X.Y.Z), as far as it is known before the build."""
    return {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": _arch(platform), "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "implementation_version": python,
            "python_full_version": python, "python_version": ".".join(python.split(".")[:2]),
            "platform_release": "", "platform_version": ""}


def requirement_blocks(export_text: str, markers: dict[str, str] | None = None) -> dict[str, str]:
    """``uv export`` (with hashes) split into one block per package, by name;
    with ``markers``, only the requirements that apply to that environment."""
    entries: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in export_text.splitlines():
        if line.startswith((" ", "\t")) and current is not None:
            current.append(line)
            continue
        m = _REQ_NAME.match(line)
        current = None
        if m and not line.startswith(("#", "-")):
            current = [line]
            entries.append((canonicalize_name(m.group(1)), current))
    blocks: dict[str, str] = {}
    for name, lines in entries:
        if markers is None or _applies(lines[0], markers):
            blocks[name] = blocks.get(name, "") + "\n".join(lines) + "\n"
    return blocks


def _applies(line: str, markers: dict[str, str]) -> bool:
    """Whether a requirement line's markers hold for the image; one that cannot be
    read is kept (uv evaluates it when installing)."""
    try:
        marker = Requirement(line.rstrip("\\").strip()).marker
    except InvalidRequirement:
        return True
    return marker is None or marker.evaluate(markers)


def declared_indexes(pyprojects: Iterable[dict[str, Any]]) -> tuple[PackageIndex, ...]:
    """The indexes the project's pyproject.toml files declare."""
    found: list[PackageIndex] = []
    for pyproject in pyprojects:
        uv = pyproject.get("tool", {}).get("uv", {})
        for index in uv.get("index", []):
            if isinstance(index, dict) and isinstance(index.get("url"), str):
                found.append(PackageIndex(index["url"], index.get("name"), index.get("format") == "flat"))
        urls = [uv.get("index-url"), *(uv.get("extra-index-url") or [])]
        found += [PackageIndex(url) for url in urls if isinstance(url, str)]
    return tuple(found)


def secret_prefix(index_name: str) -> str:
    """uv's credential variables of a named index: UV_INDEX_<NAME>_USERNAME/_PASSWORD."""
    return "UV_INDEX_" + re.sub(r"[^A-Z0-9]", "_", index_name.upper()) + "_"


def index_access(registry: str, indexes: tuple[PackageIndex, ...], secrets: tuple[str, ...]) -> IndexAccess | None:
    """How a pinned layer installs a package locked from ``registry``; None:
    only the final ``uv sync`` can (see the module's docstring)."""
    if registry.rstrip("/") == PYPI:
        return IndexAccess()
    index = next((i for i in indexes if i.url.rstrip("/") == registry.rstrip("/")), None)
    url = urlsplit(index.url) if index else None
    # A local directory index is not in the build context; credentials in the URL stay with uv sync.
    if index is None or index.flat or url.scheme not in ("http", "https") or "@" in url.netloc:
        return None
    if index.name:
        prefix = secret_prefix(index.name)
        return IndexAccess(f"{index.name}={index.url}", tuple(s for s in secrets if s.startswith(prefix)))
    # An unnamed index gets no credentials of its own: pinned only when no secret could be its.
    named = [secret_prefix(i.name) for i in indexes if i.name]
    if any(not s.startswith(tuple(named)) for s in secrets):
        return None
    return IndexAccess(index.url)


def split(sizes: dict[str, int], names: set[str], heavy_override: tuple[str, ...],
          index_of: Callable[[str], str] = lambda name: "") -> list[tuple[str, tuple[str, ...]]]:
    """(layer name, packages) from the lowest layer up; the sync layer takes the rest.
    ``heavy_override`` replaces the size rule for which packages get layers of their own;
    packages of different ``index_of`` never share a heavy group."""
    if heavy_override:
        heavy = {canonicalize_name(n) for n in heavy_override} & names
    else:
        heavy = {n for n in names if sizes.get(n, 0) >= HEAVY_FLOOR}
    layers = _heavy_layers(sorted(heavy, key=lambda n: (-sizes.get(n, 0), n)), index_of)
    medium = tuple(sorted(n for n in names - heavy if sizes.get(n, 0) >= MEDIUM_FLOOR))
    if medium:
        layers.append(("medium", medium))
    return layers


def _heavy_layers(heavy: list[str], index_of: Callable[[str], str]) -> list[tuple[str, tuple[str, ...]]]:
    """A layer per heavy package (largest first) within HEAVY_LAYER_BUDGET; past
    it, the smaller ones share layers of consecutive sizes, one index's each (one
    change rebuilds its group and what lies above, as it would anyway in a chain)."""
    if len(heavy) <= HEAVY_LAYER_BUDGET:
        return [(f"heavy-{n}", (n,)) for n in heavy]
    alone = HEAVY_LAYER_BUDGET // 2
    by_index: dict[str, list[str]] = {}
    for name in heavy[alone:]:
        by_index.setdefault(index_of(name), []).append(name)
    # Groups of this size, cut per index, number at most the budget's other half.
    slots = HEAVY_LAYER_BUDGET - alone - len(by_index) + 1
    per_group = -(-len(heavy[alone:]) // max(1, slots))  # ceiling division
    groups = [tuple(names[i:i + per_group]) for names in by_index.values() for i in range(0, len(names), per_group)]
    return [(f"heavy-{n}", (n,)) for n in heavy[:alone]] + [(f"heavy-group-{g[0]}", g) for g in groups]


def pinned_layers(export_text: str, lock: LockFile, *, platform: str, python: str,
                  heavy_override: tuple[str, ...], indexes: tuple[PackageIndex, ...] = (),
                  secrets: tuple[str, ...] = ()) -> list[PinnedChoice]:
    """The pinned layers, from the lowest up.

    Only packages pinned by hash from an index a layer can reach qualify
    (``index_access``); a layer holds packages of one index only."""
    access: dict[str, IndexAccess] = {}
    blocks = requirement_blocks(export_text, image_markers(platform, python))
    for name, text in blocks.items():
        if "--hash=" not in text or " @ " in text.split("\n", 1)[0]:
            continue
        registry = _locked_registry(lock, name, set(_HASH.findall(text)))
        found = index_access(registry, indexes, secrets) if registry else None
        if found is not None:
            access[name] = found
    choices = []
    for layer, packages in split(package_sizes(lock, platform), set(access), heavy_override,
                                 lambda name: access[name].default_index or ""):
        by_index: dict[IndexAccess, list[str]] = {}
        for package in packages:
            by_index.setdefault(access[package], []).append(package)
        for index, members in by_index.items():
            # PyPI's part keeps the layer's own name; another index's is named after it.
            name = layer if index.default_index is None or len(by_index) == 1 else \
                f"{layer}-{_slug(index.default_index)}"
            choices.append(PinnedChoice(name, tuple(members), "".join(blocks[p] for p in members), index))
    return choices


def _locked_registry(lock: LockFile, name: str, hashes: set[str]) -> str | None:
    """The registry a requirement was locked from: the lock's entry of that name
    with the same file hashes (a package locked from two indexes, by markers,
    has two entries)."""
    for package in lock.packages:
        if package.name == name and package.hashes & hashes:
            return dict(package.source).get("registry")
    return None


def _slug(default_index: str) -> str:
    head = default_index.split("=", 1)[0]
    name = head if "=" in default_index and "://" not in head else urlsplit(default_index).netloc
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "index"


def layer_rules() -> str:
    """What decides the split, for the template digest: changing it changes every tag."""
    return f"heavy>={HEAVY_FLOOR};medium>={MEDIUM_FLOOR};heavy-layers<={HEAVY_LAYER_BUDGET},groups-per-index"
