"""Is the image under a reference the plan's? Decided by its dev.raybake.input-hash
label, locally and in a registry: raybake never calls a foreign image up to
date, pushes past it or names its digest in a job config."""

from __future__ import annotations

from typing import Protocol

from raybake.contract import LABEL_INPUT_HASH
from raybake.errors import RegistryError
from raybake.reference import Reference
from raybake.tools import docker


class Engine(Protocol):
    """What decide() asks of the engine (raybake.tools.docker; a fake in unit tests)."""

    def local_image(self, reference: str) -> docker.LocalImage | None: ...

    def registry_image(self, reference: str, platform: str | None = None) -> docker.RegistryImage | None: ...


def foreign_image(reference: str, found: str | None, want: str) -> str | None:
    """Why the image under ``reference`` is not the one whose input hash is
    (or, for a tag's 16 digits, starts with) ``want``; None when it is."""
    if found is not None and found.startswith(want):
        return None
    return (f"the image under {reference} is not raybake's build of this lock and spec: its "
            f"{LABEL_INPUT_HASH} label is {found or '(none)'}, the plan's is {want}")


def registry_digest_reference(reference: str, want: str, *, platform: str | None,
                              engine: Engine = docker) -> str | None:
    """``repository@sha256:...`` of ``reference`` in its registry after checking
    that its input-hash label is ``want``; None when the tag is absent.

    A tag there that names another image (pushed by hand, overwritten) is an
    error naming both hashes: raybake never calls it up to date, pushes past it
    or names its digest."""
    found = engine.registry_image(reference, platform)
    if found is None:
        return None
    problem = foreign_image(reference, found.input_hash, want)
    if problem is not None:
        raise RegistryError(f"{problem} (registry digest {found.digest})",
                            fix="push this plan's image over it with `raybake build --push --force` "
                                "(or delete that tag in the registry)")
    return str(Reference.parse(reference).with_digest(found.digest))
