"""Terminal output for the CLI: progress to stderr, results to stdout.

rich is imported on first use: an up-to-date `raybake build` never needs it."""

from __future__ import annotations

import threading
from functools import cache

from raybake.errors import RaybakeError
from raybake.progress import Reporter


@cache
def err():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(exc: RaybakeError) -> None:
    """The one-paragraph form of every error: `error: ...` then `fix: ...`."""
    err().print("[bold red]error:[/] ", end="")
    err().print(exc.message, markup=False)
    if exc.fix:
        err().print("[bold]fix:[/] ", end="")
        err().print(exc.fix, markup=False)


class ConsoleReporter(Reporter):
    # Images built side by side report from several threads: a message's lines stay together.
    _lock = threading.Lock()

    def step(self, message: str) -> None:
        from rich.markup import escape

        with self._lock:
            err().print(f"[bold cyan]raybake[/]: {escape(message)}")

    def build_line(self, line: str) -> None:
        with self._lock:
            err().print(line, style="dim", markup=False)

    def failed(self, reference: str, error: RaybakeError) -> None:
        with self._lock:
            err().print(f"[bold cyan]raybake[/]: {reference} failed; going on with the other images")
            print_error(error)

    def job_line(self, line: str) -> None:
        # The job's own output is the user's: stdout, unstyled.
        print(line, flush=True)
