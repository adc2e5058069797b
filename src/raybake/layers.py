"""Splitting the dependency install into layers: heaviest, most stable lowest.

A single ``uv sync`` layer means one small new package re-installs and
re-exports the whole environment. Lower layers here install fixed sets of
locked wheels (``uv pip install --no-deps --require-hashes`` of a generated
requirements file); the file's bytes only change when one of its packages
does, so BuildKit reuses the layer otherwise. The top layer is the usual
``uv sync --frozen``, which installs the rest and makes the environment
exactly the lock. Pure: the caller supplies uv's export and the lock text.

Each heavy package gets a layer of its own, largest lowest: changing one
rebuilds only its layer and those above it, and BuildKit compresses the
layers of a chain concurrently, which a single 600 MB layer cannot use.
The many small packages left for the top layer add up to a few MB, so a
small new dependency costs little to install, compress and unpack."""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name

from raybake.lockfile import LockFile

MiB = 2**20
KiB = 2**10
# Wheel size (compressed, from uv.lock) from which a package gets its own layer,
# and from which it joins the shared medium layer instead of the top one.
HEAVY_FLOOR = 10 * MiB
MEDIUM_FLOOR = 100 * KiB
_REQ_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def package_sizes(lock: LockFile, platform: str) -> dict[str, int]:
    """Each locked package's size: its largest wheel for this platform's
    architecture (or pure-Python wheel), else its sdist."""
    arch = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}.get(platform, platform.rsplit("/", 1)[-1])
    return {pkg.name: max((size for url, size in pkg.wheel_sizes if arch in url or "-none-any" in url),
                          default=pkg.sdist_size)
            for pkg in lock.packages}


def requirement_blocks(export_text: str) -> dict[str, str]:
    """``uv export`` (with hashes) split into one block per package, by name."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in export_text.splitlines():
        if line.startswith((" ", "\t")) and current is not None:
            current.append(line)
            continue
        m = _REQ_NAME.match(line)
        current = None
        if m and not line.startswith(("#", "-")):
            current = blocks.setdefault(canonicalize_name(m.group(1)), [])
            current.append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in blocks.items()}


def split(sizes: dict[str, int], names: set[str], heavy_override: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """(layer name, packages) from the lowest layer up; the sync layer takes the rest.
    ``heavy_override`` replaces the size rule for which packages get layers of their own."""
    if heavy_override:
        heavy = {canonicalize_name(n) for n in heavy_override} & names
    else:
        heavy = {n for n in names if sizes.get(n, 0) >= HEAVY_FLOOR}
    layers = [(f"heavy-{n}", (n,)) for n in sorted(heavy, key=lambda n: (-sizes.get(n, 0), n))]
    medium = tuple(sorted(n for n in names - heavy if sizes.get(n, 0) >= MEDIUM_FLOOR))
    if medium:
        layers.append(("medium", medium))
    return layers


def pinned_layers(export_text: str, sizes: dict[str, int],
                  heavy_override: tuple[str, ...]) -> list[tuple[str, tuple[str, ...], str]]:
    """(layer name, packages, requirements text) from the lowest layer up.

    Only packages pinned by hash from an index qualify: a git, URL or path
    requirement stays in the final ``uv sync``, which knows how to fetch it."""
    blocks = {name: text for name, text in requirement_blocks(export_text).items()
              if "--hash=" in text and " @ " not in text.split("\n", 1)[0]}
    return [(name, packages, "".join(blocks[p] for p in packages))
            for name, packages in split(sizes, set(blocks), heavy_override)]


def can_split(pyproject: dict) -> bool:
    """Pinned layers install from the default index; a project with its own
    indexes keeps the single ``uv sync`` layer."""
    uv = pyproject.get("tool", {}).get("uv", {})
    return not any(k in uv for k in ("index", "index-url", "extra-index-url", "find-links"))


def layer_rules() -> str:
    """What decides the split, for the template digest: changing it changes every tag."""
    return f"heavy>={HEAVY_FLOOR};medium>={MEDIUM_FLOOR}"
