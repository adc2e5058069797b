"""Image builds: raybake against two plain Dockerfiles on one warm machine, and
on a fresh CI runner whose only cache is the registry's.

Warm machine, per tool, in this order, on a throwaway engine of the series'
own (engines.py): cold (no image, no BuildKit cache), no-op rebuild,
source-only change, one small dependency added, one heavy dependency's
version changed.

Fresh runner: the registry holds the previous lock's image and its build
cache; the runner is a throwaway engine with only the base image; one small
dependency is added. raybake against (b) with the same registry cache."""

from __future__ import annotations

import argparse
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BASELINES,
    CA_BUNDLE,
    EXAMPLE,
    LOGS,
    REPO,
    SMALL_DEP,
    WORK,
    add_dependency,
    edit_source,
    error_summary,
    fresh_copy,
    locked_version,
    log,
    pin_dependency,
    previous_release,
    raybake_build,
    raybake_env,
    run_logged,
    uv_binary,
    wait_for_idle_builder,
    wait_for_quiet_machine,
)

from engines import ThrowawayEngine
from images import (
    changed_layers,
    image_id,
    image_size,
    images_matching,
    remove_images,
    tag_and_push,
    unpacked_size,
)
from raybake.tools import docker

SCENARIOS = ("cold", "noop", "source", "small_dep", "heavy_dep")
SCENARIO_LABELS = {"cold": "cold build", "noop": "no-op rebuild", "source": "source-only change",
                   "small_dep": "small dependency added (tabulate)", "heavy_dep": "heavy dependency changed (pandas)"}
TOOLS = ("raybake", "pip", "uv")
TOOL_LABELS = {"raybake": "raybake", "pip": "(a) COPY + pip install", "uv": "(b) uv single layer",
               "raybake_zstd": "raybake, `compression: zstd`"}
FRESH_TOOLS = ("raybake", "raybake_zstd", "uv")


@dataclass
class BuildRow:
    run: int
    tool: str
    scenario: str
    ok: bool
    seconds: float | None = None
    image: str | None = None
    image_id: str | None = None
    changed_layers: int | None = None
    changed_bytes: int | None = None
    image_size: int | None = None
    unpacked_size: int | None = None
    cached_steps: int | None = None  # fresh runner: build steps BuildKit took from a cache
    error: str | None = None
    log: str | None = None
    notes: list[str] = field(default_factory=list)


class Baselines:
    """The two plain Dockerfiles, built with `docker buildx build`."""

    def __init__(self, base_image: str):
        self.base = base_image
        self.uv_ctx = WORK / "uv-context"
        self.uv_ctx.mkdir(parents=True, exist_ok=True)
        shutil.copy2(uv_binary(), self.uv_ctx / "uv")
        # The baselines get the proxy CA the way raybake does: bound from a named context.
        self.ca_ctx = WORK / "ca-context"
        self.ca_ctx.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CA_BUNDLE, self.ca_ctx / "ca.pem")

    def argv(self, tool: str, project: Path, tag: str, *extra: str) -> list[str]:
        cmd = ["docker", "buildx", "build", "--network", "host", "--progress", "plain", "--provenance=false",
               "-t", tag, "-f", str(BASELINES / f"{tool}.Dockerfile"),
               "--build-context", f"ca={self.ca_ctx}", "--build-arg", f"BASE_IMAGE={self.base}", *extra]
        if tool == "uv":
            cmd += ["--build-context", f"uv={self.uv_ctx}"]
        return [*cmd, str(project)]

    def build(self, tool: str, project: Path, tag: str, logfile: Path, *extra: str) -> tuple[int, float]:
        return run_logged(self.argv(tool, project, tag, "--load", *extra), logfile)


class _ToolBench:
    """What every build series shares: raybake against the baselines on one base image."""

    def __init__(self, opts: argparse.Namespace, base_image: str, stamp: str, registry: str | None):
        self.opts = opts
        self.base = base_image
        self.stamp = stamp
        self.registry = registry
        self.baselines = Baselines(base_image)
        self.rows: list[BuildRow] = []
        # tool -> (previous, new) image in the registry, for the node-pull benchmark
        self.pushed: dict[str, tuple[str, str]] = {}


class BuildBench(_ToolBench):
    """The warm machine's series; run 1's cold and small-dependency images are pushed."""

    def __init__(self, opts: argparse.Namespace, base_image: str, stamp: str, registry: str | None):
        super().__init__(opts, base_image, stamp, registry)
        self.pandas_prev: str | None = None
        self.pandas_error: str | None = None

    def prepare(self) -> None:
        current = locked_version(EXAMPLE, "pandas")
        try:
            self.pandas_prev = previous_release("pandas", current)
            log(f"heavy dependency change: pandas {current} -> {self.pandas_prev}")
        except Exception as exc:  # noqa: BLE001 - recorded, the scenario is reported failed
            self.pandas_error = f"cannot find the pandas release before {current}: {exc}"
            log(self.pandas_error)

    def build(self, tool: str, project: Path, run: int, scenario: str, logfile: Path,
              series: dict[str, Any]) -> tuple[int, float, str | None]:
        """Build the project at ``project`` with ``tool``; (exit code, seconds, reference built)."""
        if tool == "raybake":
            env = raybake_env(self.base, series["repository"], RAYBAKE_CACHE_DIR=str(series["cache_dir"]))
            return raybake_build(project, env, logfile)
        tag = f"raybake-bench/{tool}:{self.stamp}-r{run}-{scenario}"
        code, seconds = self.baselines.build(tool, project, tag, logfile)
        return code, seconds, tag if code == 0 else None

    def series(self, tool: str, run: int) -> None:
        wait_for_quiet_machine(self.opts.no_wait)
        project = fresh_copy(WORK / f"ray-app-{tool}")
        series = {"repository": f"raybake-bench-rb-{self.stamp}-r{run}",
                  "cache_dir": WORK / "raybake-cache" / f"{self.stamp}-r{run}"}
        if series["cache_dir"].exists():
            shutil.rmtree(series["cache_dir"])
        log(f"run {run}, {TOOL_LABELS[tool]}: a throwaway engine for the cold build")
        # An engine of the series' own: cold without pruning the shared engine's cache, which
        # others' builds use; its images, BuildKit cache and uv cache mounts go with it.
        with ThrowawayEngine(f"example-{tool}-r{run}", (self.base,)):
            self.scenarios(tool, run, project, series)

    def scenarios(self, tool: str, run: int, project: Path, series: dict[str, Any]) -> None:
        previous: str | None = None
        built: dict[str, str] = {}
        for scenario in SCENARIOS:
            logfile = LOGS / f"{self.stamp}-r{run}-{tool}-{scenario}.log"
            row = BuildRow(run, tool, scenario, ok=False, log=str(logfile.relative_to(REPO)))
            try:
                if scenario == "source":
                    edit_source(project, run)
                elif scenario == "small_dep":
                    add_dependency(project, SMALL_DEP, LOGS / f"{self.stamp}-r{run}-{tool}-lock-small.log")
                elif scenario == "heavy_dep":
                    if self.pandas_prev is None:
                        raise RuntimeError(self.pandas_error or "no previous pandas release")
                    pin_dependency(project, "pandas", self.pandas_prev,
                                   LOGS / f"{self.stamp}-r{run}-{tool}-lock-heavy.log")
            except Exception as exc:  # noqa: BLE001 - the scenario fails, the series goes on
                row.error = f"preparing the scenario failed: {exc}"
                self.rows.append(row)
                log(f"  {scenario}: FAILED ({row.error})")
                continue
            if not wait_for_idle_builder(max_wait=180):
                row.notes.append("other builds ran on the engine at the same time")
            code, seconds, ref = self.build(tool, project, run, scenario, logfile, series)
            row.seconds = seconds
            if code != 0 or ref is None:
                row.error = f"exit {code}: {error_summary(logfile)}"
                self.rows.append(row)
                log(f"  {scenario}: FAILED after {seconds:.1f} s ({row.error})")
                continue
            row.ok = True
            row.image, row.image_id = ref, image_id(ref)
            row.changed_layers, row.changed_bytes = changed_layers(ref, previous or self.base)
            row.image_size, row.unpacked_size = image_size(ref), unpacked_size(ref)
            self.rows.append(row)
            built[scenario] = ref
            previous = ref
            log(f"  {scenario}: {seconds:.2f} s, {row.changed_layers} new layers, "
                f"{row.changed_bytes / 1e6:.0f} MB, image {row.image_size / 1e6:.0f} MB")
        if run == 1 and self.registry and "cold" in built and "small_dep" in built:
            target = f"{self.registry}/raybake-bench/pull-{tool}-{self.stamp}"
            try:
                for scenario, version in (("cold", "v1"), ("small_dep", "v2")):
                    tag_and_push(built[scenario], f"{target}:{version}")
                self.pushed[tool] = (f"{target}:v1", f"{target}:v2")
                remove_images([f"{target}:v1", f"{target}:v2"])
            except Exception as exc:  # noqa: BLE001 - the pull benchmark builds its own then
                log(f"  pushing {tool}'s images for the node-pull benchmark failed: {exc}")

    def run(self) -> list[BuildRow]:
        self.prepare()
        for run in range(1, self.opts.runs + 1):
            for tool in TOOLS:
                self.series(tool, run)
        return self.rows


_CACHED = re.compile(r"^#\d+ CACHED$", re.MULTILINE)


def cached_steps(logfile: Path) -> int:
    return len(_CACHED.findall(logfile.read_text(errors="replace"))) if logfile.exists() else 0


class FreshRunnerBench(_ToolBench):
    """A CI runner with nothing local but the base image; the registry has the
    previous lock's image and build cache; one small dependency is added."""

    def previous_image(self, tool: str, project: Path, repository: str, run: int) -> str:
        """Build and push the previous lock's image with its build cache (not timed)."""
        logfile = LOGS / f"{self.stamp}-r{run}-fresh-{tool}-previous.log"
        if tool.startswith("raybake"):
            # --push exports the build cache next to the image (REPOSITORY:buildcache-default).
            code, _, ref = raybake_build(project, raybake_env(self.base, repository), logfile, "--push")
        else:
            ref = f"{repository}:v1"
            code, _ = run_logged(self.baselines.argv(
                tool, project, ref, "--output", "type=image,push=true",
                "--cache-to", f"type=registry,ref={repository}:buildcache,mode=max"), logfile)
        if code != 0 or ref is None:
            raise RuntimeError(f"the previous image did not build: {error_summary(logfile)}")
        return ref

    def series(self, tool: str, run: int) -> None:
        wait_for_quiet_machine(self.opts.no_wait)
        project = fresh_copy(WORK / f"ray-app-fresh-{tool}")
        if tool == "raybake_zstd":
            (project / "images").mkdir(exist_ok=True)  # the example has images/ (a matrix)
            (project / "images" / "default.yaml").write_text("compression: zstd\n")
        repository = f"{self.registry}/raybake-bench/fresh-{tool}-{self.stamp}-r{run}"
        logfile = LOGS / f"{self.stamp}-r{run}-fresh-{tool}.log"
        row = BuildRow(run, tool, "fresh_runner", ok=False, log=str(logfile.relative_to(REPO)))
        self.rows.append(row)
        try:
            log(f"run {run}, fresh runner, {TOOL_LABELS[tool]}: the previous lock's image and cache to the registry")
            previous = self.previous_image(tool, project, repository, run)
            remove_images(images_matching((repository,)))
            add_dependency(project, SMALL_DEP, LOGS / f"{self.stamp}-r{run}-fresh-{tool}-lock.log")
            if not wait_for_idle_builder():
                row.notes.append("other builds ran on the machine at the same time")
        except Exception as exc:  # noqa: BLE001 - the scenario fails, the benchmark goes on
            row.error = str(exc)
            log(f"  FAILED: {row.error}")
            return
        log("  the runner: a throwaway engine with only the base image")
        with ThrowawayEngine(f"fresh-{tool}-r{run}", (self.base,)):
            self.fresh_build(tool, run, project, repository, row, previous, logfile)

    def fresh_build(self, tool: str, run: int, project: Path, repository: str, row: BuildRow, previous: str,
                    logfile: Path) -> None:
        if tool.startswith("raybake"):
            code, seconds, ref = raybake_build(project, raybake_env(self.base, repository), logfile)
        else:
            ref = f"{repository}:v2"
            code, seconds = self.baselines.build(
                tool, project, ref, logfile, "--cache-from", f"type=registry,ref={repository}:buildcache")
        row.seconds = seconds
        if code != 0 or ref is None:
            row.error = f"exit {code}: {error_summary(logfile)}"
            log(f"  FAILED after {seconds:.1f} s ({row.error})")
            return
        row.ok = True
        row.image, row.image_id, row.cached_steps = ref, image_id(ref), cached_steps(logfile)
        row.image_size = image_size(ref)
        log(f"  one small dependency on a fresh runner: {seconds:.2f} s, {row.cached_steps} steps from the cache")
        if run == 1:
            try:
                docker.push(ref)
                self.pushed[tool] = (previous, ref)
            except Exception as exc:  # noqa: BLE001
                log(f"  pushing the new image failed: {exc}")

    def run(self) -> list[BuildRow]:
        for run in range(1, self.opts.runs + 1):
            for tool in FRESH_TOOLS:
                self.series(tool, run)
        return self.rows
