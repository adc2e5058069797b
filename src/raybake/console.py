"""Terminal output for the CLI: progress to stderr, results to stdout.

rich is imported on first use: an up-to-date `raybake build` never needs it."""

from __future__ import annotations

from functools import cache

from raybake.build import Reporter


@cache
def err():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class ConsoleReporter(Reporter):
    def step(self, message: str) -> None:
        err().print(f"[bold cyan]raybake[/]: {message}")

    def build_line(self, line: str) -> None:
        err().print(line, style="dim", markup=False)

    def job_line(self, line: str) -> None:
        # The job's own output is the user's: stdout, unstyled.
        print(line, flush=True)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
