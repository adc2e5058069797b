"""Progress: what long work tells the user, and how sizes are written.

The library reports through a Reporter; the CLI's prints (raybake.console).
Modules that report progress import this, never the executor."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raybake.errors import RaybakeError


class Reporter:
    """Where progress goes. The default says nothing; the CLI prints."""

    def step(self, message: str) -> None: ...

    def build_line(self, line: str) -> None: ...

    def job_line(self, line: str) -> None: ...

    def failed(self, reference: str, error: RaybakeError) -> None:
        """One of several builds failed; the others go on."""


class Labelled(Reporter):
    """Progress of one of several images built side by side: each line names its spec."""

    def __init__(self, reporter: Reporter, label: str) -> None:
        self.reporter = reporter
        self.prefix = f"[{label}] "

    def step(self, message: str) -> None:
        self.reporter.step(self.prefix + message)

    def build_line(self, line: str) -> None:
        self.reporter.build_line((self.prefix + line).rstrip())  # BuildKit's blank lines stay blank but named

    def job_line(self, line: str) -> None:
        self.reporter.job_line(self.prefix + line)

    def failed(self, reference: str, error: RaybakeError) -> None:
        self.reporter.failed(reference, error)


def format_size(n: float | None) -> str:
    """Sizes as raybake prints them everywhere: binary units (the stage cap is in MiB)."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
