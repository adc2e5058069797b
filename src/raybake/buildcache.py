"""Where a build's BuildKit cache comes from and goes to, pure.

A fresh CI runner has an empty BuildKit cache: without a shared cache, one
added package rebuilds every dependency layer there. The cache lives in the
registry next to the image (``REPOSITORY:buildcache-SPEC``, ``mode=max`` so
that every split dependency layer is in it), read by every build and written
by the build that pushes. Where the cache lives does not change the image, so
none of this is hashed (the spec fields are "neutral")."""

from __future__ import annotations

from dataclasses import dataclass, replace

from raybake.errors import SpecError
from raybake.reference import Reference
from raybake.spec import ImageSpec

CACHE_TAG_PREFIX = "buildcache-"
CACHE_TYPES = ("registry", "inline", "local", "gha", "s3", "azblob")


@dataclass(frozen=True)
class CacheOptions:
    """buildx --cache-from and --cache-to values, in order."""

    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()

    @property
    def with_image(self) -> tuple[str, ...]:
        """Exports that live in the image's own config (``type=inline``): they go
        wherever the image goes, so only once it is verified."""
        return tuple(value for value in self.cache_to if _cache_type(value) == "inline")

    @property
    def after_verification(self) -> tuple[str, ...]:
        """Exports that write somewhere of their own (a registry, a directory):
        raybake runs them only after the image is verified, so a rejected build's
        layers never leave the machine."""
        return tuple(value for value in self.cache_to if _cache_type(value) != "inline")


def _cache_type(value: str) -> str | None:
    return dict(part.split("=", 1) for part in value.split(",") if "=" in part).get("type")


def default_cache_ref(spec: ImageSpec) -> str | None:
    """``REPOSITORY:buildcache-SPEC`` when the repository names a registry host, else None."""
    repository = Reference(spec.repository)
    if repository.registry is None:
        return None
    return str(replace(repository, tag=f"{CACHE_TAG_PREFIX}{spec.name}"))


def normalize(value: str, *, export: bool, compression: str = "gzip", level: int | None = None) -> str:
    """A buildx cache value: ``type=...,k=v`` as written, ``inline``, or a bare
    reference meaning ``type=registry,ref=REF``. Exports to a registry get
    ``mode=max`` unless they say otherwise: with ``mode=min`` only the final
    image's layers are cached. A zstd image exports a zstd cache: a fresh
    runner then unpacks zstd, and its image reuses those blobs."""
    value = value.strip()
    if value == "inline":
        return "type=inline"
    if "=" not in value.split(",", 1)[0]:
        value = f"type=registry,ref={value}"
    options = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    if options.get("type") not in CACHE_TYPES:
        raise SpecError(f"{value!r} is not a BuildKit cache setting",
                        fix=f"write type=registry,ref=REGISTRY/REPO:TAG (or a bare reference), type=inline, "
                            f"or another buildx cache type ({', '.join(CACHE_TYPES)})")
    if export and options["type"] == "registry":
        extra = [] if "mode" in options else ["mode=max"]
        if compression == "zstd" and "compression" not in options:
            # Forced: BuildKit would otherwise reuse the gzip blobs it already has.
            extra += ["compression=zstd", "force-compression=true", "oci-mediatypes=true"]
        if level is not None and "compression-level" not in options:
            extra += [f"compression-level={level}"]
        value = ",".join([value, *extra])
    return value


def cache_options(spec: ImageSpec, *, push: bool, cache_from: tuple[str, ...] = (),
                  cache_to: tuple[str, ...] = ()) -> CacheOptions:
    """The CLI's values, else the spec's (``cache_from``/``cache_to``; an empty list
    turns the default off), else the default: import from ``default_cache_ref``
    always, export to it when the build is pushed (the runner that publishes
    the image publishes its cache; a failed export does not fail that build:
    raybake.build warns)."""
    ref = default_cache_ref(spec)
    sources = cache_from or spec.cache_from
    if sources is None:
        sources = (ref,) if ref else ()
    targets = cache_to or spec.cache_to
    if targets is None:
        targets = (ref,) if ref and push else ()
    return CacheOptions(tuple(normalize(v, export=False) for v in sources),
                        tuple(normalize(v, export=True, compression=spec.compression, level=spec.compression_level)
                              for v in targets))
