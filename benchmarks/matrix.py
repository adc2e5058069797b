"""`raybake build --all` of a matrix of Pythons against one spec alone.

examples/ray-app has two specs: `default` (Python 3.11 on the bookworm base)
and `py313` (3.13 on the trixie base, through RAYBAKE_BASE_IMAGE_PY313). Per
run: each spec alone, then both with `--all` (at the same time: different
bases), each timed as the whole command. Every measurement builds images of
its own: a variable unique to it in `[tool.raybake] env` makes every
dependency layer new, so no layer comes from BuildKit's cache and no identical
image is in the store, while nothing is pruned (the cache is shared with
every other build on the engine). Not cleared, for the same reason: uv's
download cache mount and the venv step below the variable."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    LOGS,
    REPO,
    WORK,
    error_summary,
    fresh_copy,
    log,
    raybake_build,
    raybake_env,
    wait_for_idle_builder,
    wait_for_quiet_machine,
)

from images import images_matching, remove_images

MATRIX_SCENARIOS = ("default", "py313", "all")
MATRIX_LABELS = {"default": "`raybake build` default (Python 3.11, bookworm) alone",
                 "py313": "`raybake build py313` (Python 3.13, trixie) alone",
                 "all": "`raybake build --all`: both at the same time"}
_BUILT = re.compile(r"^(\S+)\s+built\s", re.MULTILINE)


@dataclass
class MatrixRow:
    run: int
    scenario: str
    ok: bool
    seconds: float | None = None
    images: list[str] = field(default_factory=list)
    error: str | None = None
    log: str | None = None
    notes: list[str] = field(default_factory=list)


class MatrixBench:
    def __init__(self, opts: argparse.Namespace, base_image: str, trixie_base_image: str, stamp: str):
        self.opts = opts
        self.base = base_image
        self.trixie = trixie_base_image
        self.stamp = stamp
        self.rows: list[MatrixRow] = []

    def measure(self, run: int, scenario: str) -> None:
        name = f"{self.stamp}-r{run}-{scenario}"
        project = fresh_copy(WORK / "ray-app-matrix")
        with (project / "pyproject.toml").open("a") as f:
            f.write(f'\n[tool.raybake]\nenv = {{ RAYBAKE_BENCH_MEASUREMENT = "{name}" }}\n')
        repository = f"raybake-bench-matrix-{self.stamp}"
        env = raybake_env(self.base, repository, RAYBAKE_BASE_IMAGE_PY313=self.trixie,
                          RAYBAKE_CACHE_DIR=str(WORK / "raybake-cache" / name))
        logfile = LOGS / f"{name}.log"
        row = MatrixRow(run, scenario, ok=False, log=str(logfile.relative_to(REPO)))
        self.rows.append(row)
        if not wait_for_idle_builder(max_wait=180):
            row.notes.append("other builds ran on the engine at the same time")
        code, seconds, _ = raybake_build(project, env, logfile, *(["--all"] if scenario == "all" else [scenario]))
        row.seconds = seconds
        row.images = _BUILT.findall(Path(logfile).read_text(errors="replace"))
        if code != 0 or len(row.images) != (2 if scenario == "all" else 1):
            row.error = f"exit {code}: {error_summary(logfile)}"
            log(f"  {scenario}: FAILED after {seconds:.1f} s ({row.error})")
        else:
            row.ok = True
            log(f"  {scenario}: {seconds:.2f} s")
        if not self.opts.keep_images:
            remove_images(images_matching((f"{repository}:",)))

    def run(self) -> list[MatrixRow]:
        for run in range(1, self.opts.runs + 1):
            wait_for_quiet_machine(self.opts.no_wait)
            log(f"run {run}, --all of a matrix of two Pythons against each spec alone")
            for scenario in MATRIX_SCENARIOS:
                self.measure(run, scenario)
        return self.rows
