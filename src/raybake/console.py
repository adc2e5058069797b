"""Terminal output for the CLI: progress to stderr, results to stdout.

Progress modes (``--progress``, like buildx's): ``plain`` prints raybake's
steps and BuildKit's plain log; ``tty`` a compact live view (raybake's steps,
then one line per running build step, replaced as it goes); ``quiet`` only
errors (results still go to stdout); ``auto`` is ``tty`` in a terminal, else
``plain`` (CI, a pipe).

rich is imported on first use: an up-to-date `raybake build` never needs it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from raybake.errors import RaybakeError
from raybake.progress import Reporter

PROGRESS_MODES = ("auto", "tty", "plain", "quiet")


@cache
def err():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(exc: RaybakeError, console=None) -> None:
    """The one-paragraph form of every error: `error: ...` then `fix: ...`."""
    console = console or err()
    console.print("[bold red]error:[/] ", end="")
    console.print(exc.message, markup=False)
    if exc.fix:
        console.print("[bold]fix:[/] ", end="")
        console.print(exc.fix, markup=False)


def progress_mode(asked: str) -> str:
    """``tty``, ``plain`` or ``quiet`` for the mode asked for (BuildKit's ``rawjson`` reads as plain)."""
    if asked == "auto":
        return "tty" if err().is_terminal else "plain"
    return asked if asked in PROGRESS_MODES else "plain"


@contextmanager
def console_reporter(mode: str) -> Iterator[Reporter]:
    """The reporter of a progress mode (see progress_mode), live while the block runs."""
    mode = progress_mode(mode)
    if mode != "tty":
        yield ConsoleReporter(quiet=mode == "quiet")
        return
    reporter = LiveReporter(err())
    try:
        yield reporter
    finally:
        reporter.stop()


class ConsoleReporter(Reporter):
    # Images built side by side report from several threads: a message's lines stay together.
    _lock = threading.Lock()

    def __init__(self, *, quiet: bool = False, console=None) -> None:
        self.quiet = quiet
        self._console = console  # None: stderr's, made on first use

    @property
    def console(self):
        return self._console or err()

    def step(self, message: str) -> None:
        from rich.markup import escape

        if self.quiet:
            return
        with self._lock:
            self.console.print(f"[bold cyan]raybake[/]: {escape(message)}")

    def build_line(self, line: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self.console.print(line, style="dim", markup=False)

    def failed(self, reference: str, error: RaybakeError) -> None:
        with self._lock:
            self.console.print(f"[bold cyan]raybake[/]: {reference} failed; going on with the other images")
            print_error(error, self.console)

    def job_line(self, line: str) -> None:
        # The job's own output is the user's: stdout, unstyled.
        print(line, flush=True)


# BuildKit's plain log: "#N NAME" opens step N, "#N 1.234 TEXT" is its output,
# "#N DONE 1.2s" / "#N CACHED" / "#N ERROR: ..." / "#N CANCELED" ends it.
_LOG_LINE = re.compile(r"^(?P<label>\[[^\]]+\] )?(?P<number>#[1-9]\d*) (?P<text>.*)$")  # #0: buildx's own note
_LABEL = re.compile(r"^\[[^\]]+\] ")
_STEP_END = re.compile(r"^(DONE\b|CACHED$|ERROR\b|CANCELED\b)")
_STEP_OUTPUT = re.compile(r"^\d+\.\d+ (.*)$")


@dataclass
class _RunningStep:
    name: str
    started: float
    last: str = ""


class LiveReporter(ConsoleReporter):
    """The compact view for a terminal: raybake's steps and errors print as
    lines; below them one line per BuildKit step that is running (its name,
    seconds, and its latest output), replaced as it goes and gone when done."""

    def __init__(self, console) -> None:
        from rich.live import Live

        super().__init__(console=console)
        self._running: dict[tuple[str, str], _RunningStep] = {}
        self._ended: set[tuple[str, str]] = set()
        # Guards only the running steps, never held while printing: rich's refresh
        # thread renders under its own lock, and a print waits for that one.
        self._steps_lock = threading.Lock()
        self._live = Live(console=console, transient=True, refresh_per_second=8,
                          get_renderable=self._render, redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def stop(self) -> None:
        self._live.stop()

    def step(self, message: str) -> None:
        # raybake's next step for an image: its build is over, whatever BuildKit left open.
        label = m.group() if (m := _LABEL.match(message)) else ""
        with self._steps_lock:
            for key in [k for k in self._running if k[0] == label]:
                del self._running[key]
        super().step(message)

    def build_line(self, line: str) -> None:
        m = _LOG_LINE.match(line)
        if m is None:
            return
        key = (m.group("label") or "", m.group("number"))
        text = m.group("text")
        with self._steps_lock:
            if _STEP_END.match(text):
                self._running.pop(key, None)
                self._ended.add(key)
            elif key in self._running:
                output = _STEP_OUTPUT.match(text)
                if text != self._running[key].name:  # BuildKit repeats a step's name when it resumes
                    self._running[key].last = output.group(1) if output else text
            elif key not in self._ended:
                self._running[key] = _RunningStep(text, time.monotonic())

    def job_line(self, line: str) -> None:
        self.stop()  # the job's own output follows the build: plain lines on stdout
        super().job_line(line)

    def _render(self):
        from rich.console import Group
        from rich.text import Text

        now = time.monotonic()
        lines = []
        with self._steps_lock:
            for (label, number), step in self._running.items():
                line = Text(f"{label}{number} ", style="cyan", no_wrap=True, overflow="ellipsis")
                line.append(step.name)
                line.append(f"  {now - step.started:.0f} s", style="bold")
                if step.last:
                    line.append(f"  {step.last}", style="dim")
                lines.append(line)
        return Group(*lines)
