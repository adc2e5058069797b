"""Image references: ``[HOST[:PORT]/]PATH[:TAG][@DIGEST]``, parsed in one place,
by docker-image-py (Docker's own reference grammar, github.com/distribution/reference)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from docker_image import reference as grammar

from raybake.errors import InvalidReference

REFERENCE_FIX = ("write it as Docker does: lowercase path components of letters, digits and '.', '_', '-' "
                 "separators, optionally after a registry host, then at most one :TAG (e.g. "
                 "127.0.0.1:5000/my-app:v1, ghcr.io/org/app)")


@dataclass(frozen=True)
class Reference:
    repository: str  # [host[:port]/]path, as written (Docker Hub names stay familiar)
    tag: str | None = None
    digest: str | None = None  # sha256:...

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``text`` by Docker's grammar; InvalidReference when Docker would refuse it
        (``app:tag:extra``, uppercase in the path, a bad digest, over 255 characters)."""
        try:
            grammar.Reference.parse_normalized_named(text)  # Docker's rules for familiar names
            parsed = grammar.Reference.parse(text)  # the parts as written
        except grammar.InvalidReference as exc:
            raise InvalidReference(f"{text!r} is not an image reference Docker accepts: {exc}",
                                   fix=REFERENCE_FIX) from None
        return cls(parsed["name"], parsed["tag"], parsed["digest"])

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def registry(self) -> str | None:
        """The registry the image is pushed to and pulled from: the host the name
        starts with, ``docker.io`` for a Docker Hub name (``myorg/app``). None for
        a one-component name (``ray-app``), which raybake keeps local: Docker would
        read it as Docker Hub's ``library/`` namespace, which holds only official images."""
        if "/" not in self.repository:
            return None
        domain, _ = grammar.Reference.split_docker_domain(self.repository)
        return domain

    def with_name_and_digest(self, digest: str) -> Reference:
        """The tag kept for the reader, the digest for the engine (NAME:TAG@sha256:...)."""
        return replace(self, digest=digest)

    def with_digest(self, digest: str) -> Reference:
        """The same image by digest: a tag can move, a digest cannot."""
        return replace(self, tag=None, digest=digest)
