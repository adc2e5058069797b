"""Image references: ``[HOST[:PORT]/]PATH[:TAG][@DIGEST]``, parsed in one place."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Reference:
    repository: str  # [host[:port]/]path
    tag: str | None = None
    digest: str | None = None  # sha256:...

    @classmethod
    def parse(cls, text: str) -> Reference:
        rest, _, digest = text.partition("@")
        # A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        head, slash, last = rest.rpartition("/")
        name, colon, tag = last.partition(":")
        return cls(f"{head}{slash}{name}", tag if colon else None, digest or None)

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def registry(self) -> str | None:
        """The registry host when the repository names one (``host.tld/``, ``host:port/``, ``localhost/``)."""
        first, slash, _ = self.repository.partition("/")
        return first if slash and ("." in first or ":" in first or first == "localhost") else None

    def with_name_and_digest(self, digest: str) -> Reference:
        """The tag kept for the reader, the digest for the engine (NAME:TAG@sha256:...)."""
        return replace(self, digest=digest)

    def with_digest(self, digest: str) -> Reference:
        """The same image by digest: a tag can move, a digest cannot."""
        return replace(self, tag=None, digest=digest)
