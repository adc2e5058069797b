"""raybake's heavy benchmark (not a test): a torch project from PyPI with its
CUDA wheels (benchmarks/torch-app), raybake against uv's single-layer
Dockerfile, from the build to Ray workers on three local nodes.

    uv run --frozen python benchmarks/heavy.py                 # everything (about an hour and a half)
    uv run --frozen python benchmarks/heavy.py --only build    # one part; the others' results are kept
    uv run --frozen python benchmarks/heavy.py --small         # the code paths on a light stand-in (numpy)

Every build, pull and Ray node runs in a throwaway dockerd/containerd and
registry under /var/tmp/raybake-heavy-* (benchmarks/engines.py), removed as
each part ends: nothing lands in, or is pruned from, the shared engine. Each
part waits for a running pytest first (2 cores) and is saved as it ends to
benchmarks/results/heavy.json (heavy.md: the tables). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from builds import Baselines
from common import (
    BASELINES,
    BENCH,
    CA_BUNDLE,
    CONTAINER_CA,
    LOGS,
    REPO,
    RESULTS,
    SMALL_DEP,
    WORK,
    add_dependency,
    capture,
    engine_facts,
    error_summary,
    locked_version,
    log,
    pin_dependency,
    previous_release,
    raybake_build,
    raybake_env,
    run_logged,
    uv_lock,
    wait_for_idle_builder,
    wait_for_quiet_machine,
)
from engines import DiskShort, ThrowawayEngine, ThrowawayRegistry, check_disk, free_gb
from pulls import Node, decompress_seconds
from raystart import REGISTER_TIMEOUT_MESSAGE, REGISTER_TIMEOUT_S, node_logs

from images import (
    changed_layers,
    image_size,
    layer_blobs,
    layer_media_types,
    layer_types,
    remove_images,
    unpacked_size,
)
from raybake.localcluster import local_cluster
from raybake.tools import docker

TORCH_APP = BENCH / "torch-app"
PARTS = ("build", "zstd", "pull", "fresh", "nodes")  # in this order: the costliest last
SCENARIOS = ("cold", "small_dep", "runtime_apt", "minor")
RUNTIME_APT = "libsndfile1"  # a runtime library (soundfile's), small: the layout is measured, not apt
WORKER_NODES = 2
ACTORS_PER_NODE = 2
MODE_TIMEOUT = 600  # a mode still installing after this is reported as such
UV_PRUNE_BELOW_GB = 30  # (b)'s series frees its earlier builds below this (see free_single_layer_builds)
MIN_FREE_DURING_RAY_GB = 8  # per-node installs of torch fill the disk: stop the mode below this
TOOL_LABELS = {"raybake": "raybake", "raybake_zstd": "raybake, `compression: zstd`",
               "raybake_gzip1": "raybake, `compression_level: 1` (gzip)", "uv": "(b) uv single layer"}
COMPRESSION_SETTINGS = {"raybake_zstd": 'compression = "zstd"', "raybake_gzip1": "compression_level = 1"}
PULLED = ("raybake", "raybake_zstd", "uv")  # what the pull part reads: the others are not pushed
MODES = ("prebuilt", "uv", "uv_run")
MODE_LABELS = {"prebuilt": "prebuilt raybake image", "uv": "runtime_env `uv`", "uv_run": "per-worker `uv run --with`"}

DRIVER = '''\
"""ACTORS_PER_NODE actors on every node (by its node_<i> resource) import HEAVY and
run one training step; prints when each worker started and imported."""
import json
import sys
import time

import ray

runtime_env, per_node, heavy = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ray.init()


@ray.remote(num_cpus=0)
class Trainer:
    def __init__(self):
        self.started = time.time()
        module = __import__(heavy)
        self.imported = time.time()
        self.module = module

    def step(self):
        if heavy == "torch":
            torch = self.module
            model = torch.nn.Linear(64, 1)
            loss = torch.nn.functional.mse_loss(model(torch.randn(256, 64)), torch.randn(256, 1))
            loss.backward()
            value = float(loss)
        else:
            value = float(self.module.ones(4).sum())
        return {"started": self.started, "imported": self.imported, "done": time.time(),
                "node": ray.get_runtime_context().get_node_id(), "version": str(self.module.__version__),
                "python": sys.executable, "loss": value}


options = {"runtime_env": runtime_env} if runtime_env else {}
names = sorted({k for n in ray.nodes() if n["Alive"] for k in n["Resources"] if k.startswith("node_")})
t0 = time.time()
actors = [Trainer.options(**options, resources={name: 1}).remote() for name in names for _ in range(per_node)]
infos = ray.get([a.step.remote() for a in actors], timeout=3600)
print("BENCH_RESULT " + json.dumps({"t0": t0, "end": time.time(), "actors": infos}), flush=True)
'''


# --------------------------------------------------------------------------- the workload

@dataclass(frozen=True)
class Workload:
    """The torch app, or with --small a stand-in whose heavy package is numpy."""

    heavy: str  # the package the actors import, pinned to its previous minor in the `minor` scenario
    small: bool

    def copy(self, dest: Path) -> Path:
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(TORCH_APP, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
        if self.small:
            pyproject = dest / "pyproject.toml"
            pyproject.write_text(pyproject.read_text().replace('"torch>=2.8"', '"numpy>=2"'))
            uv_lock(dest, LOGS / "heavy-small-lock.log")
        return dest

    def previous_minor(self) -> str:
        """The newest release of the previous minor version (torch 2.15.0 -> 2.14.x)."""
        current = locked_version(self.copy(WORK / "heavy-probe"), self.heavy)
        major, minor = (int(p) for p in current.split(".")[:2])
        return previous_release(self.heavy, f"{major}.{minor}.0")


def add_runtime_apt(project: Path, tool: str, dockerfile: Path) -> Path | None:
    """raybake: the spec's runtime_apt_packages; (b): an apt line where a single-layer
    Dockerfile has it, below its dependency layer. The (b) Dockerfile to use, or None."""
    if tool.startswith("raybake"):
        with (project / "pyproject.toml").open("a") as f:
            f.write(f'\n[tool.raybake]\nruntime_apt_packages = ["{RUNTIME_APT}"]\n')
        return None
    text = dockerfile.read_text()
    line = ("RUN apt-get update && apt-get install -y --no-install-recommends "
            f"{RUNTIME_APT} && rm -rf /var/lib/apt/lists/*\n")
    new = text.replace("FROM ${BASE_IMAGE}\n", "FROM ${BASE_IMAGE}\n" + line, 1)
    out = WORK / "heavy-uv-apt.Dockerfile"
    out.write_text(new)
    shutil.copy2(BASELINES / "uv.Dockerfile.dockerignore", WORK / "heavy-uv-apt.Dockerfile.dockerignore")
    return out


# --------------------------------------------------------------------------- phases from BuildKit's plain log

_DURATION = r"((?:\d+h\s*)?(?:\d+m\s*)?[\d.]+(?:ms|s))"


def seconds_of(text: str) -> float:
    """uv's durations: 850ms, 12.34s, 2m 05s, 1h 2m 3s."""
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)(ms|h|m|s)", text):
        total += float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def build_phases(logfile: Path) -> dict[str, float]:
    """Where a build spent its time, from BuildKit's plain log: uv's own lines in
    every step (Prepared = download and unpack into uv's cache, Installed, Bytecode
    compiled) and the image export (compressing layers, unpacking into the store)."""
    text = logfile.read_text(errors="replace") if logfile.exists() else ""
    phases = {"download": 0.0, "install": 0.0, "bytecode": 0.0, "compression": 0.0, "unpack": 0.0,
              "apt": 0.0, "cache_fetch": 0.0, "cache_extract": 0.0}
    for key, pattern in (("download", r"Prepared \d+ packages? in " + _DURATION),
                         ("install", r"Installed \d+ packages? in " + _DURATION),
                         ("bytecode", r"Bytecode compiled \d+ files? in " + _DURATION),
                         ("compression", r"exporting layers( [\d.]+s)? done"),
                         ("unpack", r"unpacking to \S+( [\d.]+s)? done")):
        for match in re.finditer(pattern, text):
            if match.group(1):
                phases[key] += seconds_of(match.group(1))
    # raybake byte-compiles each layer itself (seal_layer.py) after uv installed it:
    # from uv's `Installed` line to its `byte-compiled` line, by the log's timestamps.
    installed: dict[str, float] = {}
    for step, stamp, rest in re.findall(r"^#(\d+) ([\d.]+) (.*)$", text, re.MULTILINE):
        if rest.startswith("Installed "):
            installed[step] = float(stamp)
        elif rest.startswith("raybake: byte-compiled") and step in installed:
            phases["bytecode"] += float(stamp) - installed.pop(step)
    # Steps that ran apt-get: their DONE time.
    headers = dict(re.findall(r"^#(\d+) (\[.*)$", text, re.MULTILINE))
    for step, seconds in re.findall(r"^#(\d+) DONE ([\d.]+)s$", text, re.MULTILINE):
        header = headers.get(step, "")
        if "RUN apt-get update" in header:  # the spec's runtime packages, (b)'s apt line
            phases["apt"] += float(seconds)
    # A fresh runner's cache import: downloading the layers, then extracting them.
    for seconds in re.findall(r"^#\d+ sha256:\w+ \S+ / \S+ ([\d.]+)s done$", text, re.MULTILINE):
        phases["cache_fetch"] += float(seconds)
    for seconds in re.findall(r"^#\d+ extracting sha256:\w+ ([\d.]+)s done$", text, re.MULTILINE):
        phases["cache_extract"] += float(seconds)
    return {k: round(v, 2) for k, v in phases.items()}


# --------------------------------------------------------------------------- rows

@dataclass
class BuildRow:
    tool: str
    scenario: str
    ok: bool
    seconds: float | None = None
    image: str | None = None
    changed_layers: int | None = None
    changed_bytes: int | None = None
    image_size: int | None = None
    unpacked_size: int | None = None
    layers: int | None = None
    phases: dict[str, float] | None = None
    error: str | None = None
    log: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class PullRow:
    variant: str
    kind: str
    ok: bool
    bytes: int | None = None
    image_bytes: int | None = None
    fetch_s: float | None = None  # `ctr content fetch`: the blobs only
    unpack_s: float | None = None  # `ctr images pull` of fetched content: decompress and unpack
    seconds: float | None = None
    decompress_s: float | None = None
    media_types: list[str] | None = None
    error: str | None = None


@dataclass
class RayRow:
    mode: str
    ok: bool
    status: str = "failed"  # done, still installing, failed
    image: str | None = None
    runtime_env: dict[str, Any] | None = None
    cluster_start_s: float | None = None
    ready_s: float | None = None  # first actor created -> every actor's step done
    registered_s: float | None = None  # -> the last actor's worker ran its constructor
    imported_s: float | None = None  # -> the last actor's `import torch` done
    actors: int | None = None
    versions: list[str] | None = None
    register_timeouts: int | None = None
    error: str | None = None
    log: str | None = None


# --------------------------------------------------------------------------- the benchmark

class Heavy:
    def __init__(self, opts: argparse.Namespace, parts: tuple[str, ...], base: str, results: dict[str, Any],
                 save):
        self.opts = opts
        self.parts = parts
        self.base = base
        self.results = results
        self.save = save
        self.workload = Workload("numpy" if opts.small else "torch", opts.small)
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.registry: ThrowawayRegistry | None = None
        # variant -> (v1, v2) pushed for the node pulls; series -> repository with the build cache
        self.pushed: dict[str, tuple[str, str]] = {}
        self.minor: str | None = None

    def logfile(self, name: str) -> Path:
        return LOGS / f"heavy-{self.stamp}-{name}.log"

    def record(self, part: str, rows: list[Any], extra: dict[str, Any] | None = None) -> None:
        self.results[part] = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "small": self.opts.small,
                              "rows": [r if isinstance(r, dict) else asdict(r) for r in rows], **(extra or {})}
        self.save()

    # ------------------------------------------------------------------ builds

    def build_once(self, tool: str, project: Path, repository: str, scenario: str,
                   dockerfile: Path | None, *extra: str) -> tuple[int, float, str | None, Path]:
        logfile = self.logfile(f"{tool}-{scenario}")
        wait_for_idle_builder(max_wait=120)
        if tool.startswith("raybake"):
            env = raybake_env(self.base, repository, RAYBAKE_CACHE_DIR=str(WORK / f"heavy-cache-{tool}"),
                              BUILDKIT_PROGRESS="plain")
            code, seconds, ref = raybake_build(project, env, logfile, *extra)
            return code, seconds, ref, logfile
        baselines = Baselines(self.base)
        tag = f"{repository}:{scenario}"
        argv = baselines.argv("uv", project, tag, "--load", *extra)
        if dockerfile is not None:
            argv[argv.index("-f") + 1] = str(dockerfile)
        code, seconds = run_logged(argv, logfile)
        return code, seconds, tag if code == 0 else None, logfile

    def series(self, tool: str, scenarios: tuple[str, ...], part: str, rows: list[BuildRow]) -> None:
        """One tool's builds on a throwaway engine: cold, then each change on top of the previous;
        each row is added to ``rows`` and the part saved as it ends (a stop keeps what finished)."""
        assert self.registry is not None
        check_disk(f"the {TOOL_LABELS[tool]} builds")
        wait_for_quiet_machine(self.opts.no_wait)
        project = self.workload.copy(WORK / f"heavy-{tool}")
        if tool in COMPRESSION_SETTINGS:
            with (project / "pyproject.toml").open("a") as f:
                f.write(f"\n[tool.raybake]\n{COMPRESSION_SETTINGS[tool]}\n")
        repository = f"{self.registry.address}/heavy/{tool}-{self.stamp}"
        shutil.rmtree(WORK / f"heavy-cache-{tool}", ignore_errors=True)
        dockerfile: Path | None = None
        previous = self.base
        built: dict[str, str] = {}
        with ThrowawayEngine(f"build-{tool}", (self.base,)):
            for scenario in scenarios:
                self.record(part, rows, {"minor": self.minor})
                row = BuildRow(tool, scenario, ok=False)
                try:
                    if scenario == "small_dep":
                        add_dependency(project, SMALL_DEP, self.logfile(f"{tool}-lock-small"))
                    elif scenario == "runtime_apt":
                        dockerfile = add_runtime_apt(project, tool, BASELINES / "uv.Dockerfile")
                    elif scenario == "minor":
                        self.minor = self.minor or self.workload.previous_minor()
                        pin_dependency(project, self.workload.heavy, self.minor, self.logfile(f"{tool}-lock-minor"))
                except Exception as exc:  # noqa: BLE001 - the scenario fails, the series goes on
                    row.error = f"preparing the scenario failed: {exc}"
                    rows.append(row)
                    log(f"  {tool} {scenario}: FAILED ({row.error})")
                    continue
                if tool == "uv" and free_gb() < UV_PRUNE_BELOW_GB:
                    row.notes.append(self.free_single_layer_builds(previous, built))
                check_disk(f"{tool} {scenario}", minimum=12)
                rows.append(row)
                code, seconds, ref, logfile = self.build_once(tool, project, repository, scenario, dockerfile)
                row.seconds, row.log = seconds, str(logfile.relative_to(REPO))
                row.phases = build_phases(logfile)
                if code != 0 or ref is None:
                    row.error = f"exit {code}: {error_summary(logfile)}"
                    log(f"  {tool} {scenario}: FAILED after {seconds:.0f} s ({row.error})")
                    continue
                row.ok, row.image = True, ref
                row.changed_layers, row.changed_bytes = changed_layers(ref, previous)
                row.image_size, row.unpacked_size = image_size(ref), unpacked_size(ref)
                row.layers = len(capture(["docker", "image", "inspect", "--format",
                                          "{{range .RootFS.Layers}}{{println .}}{{end}}", ref]).split())
                previous, built[scenario] = ref, ref
                log(f"  {TOOL_LABELS[tool]} {scenario}: {seconds:.1f} s, {row.changed_layers} new layers "
                    f"({(row.changed_bytes or 0) / 1e9:.2f} GB), image {row.image_size / 1e9:.2f} GB; "
                    f"phases {row.phases}")
                # v1 (cold) for the fresh runner and the pulls, v2 (small dependency) for the pulls only
                if tool in PULLED and (scenario == "cold" or (scenario == "small_dep" and "pull" in self.parts)):
                    self.push_for_later(tool, project, repository, scenario, ref, dockerfile)
            self.record(part, rows, {"minor": self.minor})

    def free_single_layer_builds(self, previous: str, built: dict[str, str]) -> str:
        """(b)'s earlier images and BuildKit records, all but the last image (the next row's
        comparison) and the uv cache mount: each (b) build holds another whole environment,
        and a change rebuilds it whole anyway. Costs (b) its base stage's cache (seconds)."""
        remove_images([ref for ref in built.values() if ref != previous])
        capture(["docker", "builder", "prune", "--force", "--filter", "type=regular"])
        note = f"disk: (b)'s earlier images and build records were removed before this build ({free_gb():.0f} GB free after)"
        log(f"  {note}")
        return note

    def push_for_later(self, tool: str, project: Path, repository: str, scenario: str, ref: str,
                       dockerfile: Path | None) -> None:
        """Not timed: v1 (cold) with its build cache for the fresh runner, and v1/v2 for the node pulls."""
        version = "v1" if scenario == "cold" else "v2"
        target = f"{repository}-pull:{version}"
        try:
            if scenario == "cold" and tool.startswith("raybake"):
                # --push of an image in the store only pushes it; built again (every step from the
                # local cache), it also exports the build cache REPOSITORY:buildcache-default.
                docker.remove_image(ref)
                code, _, _, logfile = self.build_once(tool, project, repository, "cold-push", dockerfile, "--push")
                if code != 0:
                    raise RuntimeError(error_summary(logfile))
            elif scenario == "cold":
                code, _, _, logfile = self.build_once(
                    tool, project, repository, "cold-push", dockerfile, "--cache-to",
                    f"type=registry,ref={repository}:buildcache,mode=max")
                if code != 0:
                    raise RuntimeError(error_summary(logfile))
            docker.tag(ref, target)
            docker.push(target)
            docker.remove_image(target)
            old = self.pushed.get(tool, ("", ""))
            self.pushed[tool] = (target, old[1]) if version == "v1" else (old[0], target)
            log(f"  pushed {target}")
        except Exception as exc:  # noqa: BLE001 - the later parts report the missing image
            log(f"  pushing {tool} {scenario} for the later parts failed: {exc}")

    def part_build(self) -> None:
        rows: list[BuildRow] = []
        for tool in ("raybake", "uv"):
            self.series(tool, SCENARIOS, "build", rows)

    def part_zstd(self) -> None:
        """raybake with gzip (when the build part did not run in this run), with zstd layers
        and with gzip at level 1, one after the other: cold and one small dependency; gzip
        and zstd pushed for the node pulls."""
        rows: list[BuildRow] = []
        if "raybake" not in self.pushed:
            self.series("raybake", ("cold", "small_dep"), "zstd", rows)
        self.series("raybake_zstd", ("cold", "small_dep"), "zstd", rows)
        self.series("raybake_gzip1", ("cold", "small_dep"), "zstd", rows)

    # ------------------------------------------------------------------ fresh runner

    def part_fresh(self) -> None:
        """A CI runner with only the base image; the registry has v1 and its build cache."""
        assert self.registry is not None
        rows: list[BuildRow] = []
        for tool in ("raybake", "uv"):
            row = BuildRow(tool, "fresh_runner", ok=False)
            rows.append(row)
            if tool not in self.pushed or not self.pushed[tool][0]:
                row.error = "no v1 image and build cache in the registry (the build part did not push them)"
                continue
            check_disk(f"the fresh runner ({tool})")
            wait_for_quiet_machine(self.opts.no_wait)
            project = self.workload.copy(WORK / f"heavy-fresh-{tool}")
            add_dependency(project, SMALL_DEP, self.logfile(f"fresh-{tool}-lock"))
            repository = f"{self.registry.address}/heavy/{tool}-{self.stamp}"
            extra = () if tool == "raybake" else ("--cache-from", f"type=registry,ref={repository}:buildcache")
            with ThrowawayEngine(f"fresh-{tool}", (self.base,)):
                code, seconds, ref, logfile = self.build_once(tool, project, repository, "fresh", None, *extra)
                row.seconds, row.log, row.phases = seconds, str(logfile.relative_to(REPO)), build_phases(logfile)
                if code != 0 or ref is None:
                    row.error = f"exit {code}: {error_summary(logfile)}"
                else:
                    row.ok, row.image, row.image_size = True, ref, image_size(ref)
            log(f"  fresh runner {tool}: {seconds:.1f} s" + (f" FAILED {row.error}" if row.error else ""))
            self.record("fresh", rows)

    # ------------------------------------------------------------------ node pulls

    def part_pull(self) -> None:
        rows: list[PullRow] = []
        for variant in PULLED:
            for kind in ("cold", "update"):
                row = PullRow(variant, kind, ok=False)
                rows.append(row)
                pair = self.pushed.get(variant)
                if not pair or not pair[0] or not pair[1]:
                    row.error = "not measured: its v1/v2 were not pushed in this run"
                    continue
                try:
                    check_disk(f"the node pull ({variant}, {kind})")
                    wait_for_quiet_machine(self.opts.no_wait)
                    self.pull_once(row, *pair)
                    log(f"  pull {variant} {kind}: {row.bytes / 1e9:.2f} GB, fetch {row.fetch_s:.1f} s, "
                        f"unpack {row.unpack_s:.1f} s, decompress alone {row.decompress_s} s")
                except DiskShort:
                    raise
                except Exception as exc:  # noqa: BLE001
                    row.error = str(exc)[:400]
                    log(f"  pull {variant} {kind}: FAILED {row.error}")
                self.record("pull", rows)

    def pull_once(self, row: PullRow, v1: str, v2: str) -> None:
        image = v1 if row.kind == "cold" else v2
        blobs = layer_blobs(image)
        row.image_bytes = sum(blobs.values())
        if row.kind == "update":
            before = layer_blobs(v1)
            blobs = {d: s for d, s in blobs.items() if d not in before}
        row.bytes, row.media_types = sum(blobs.values()), layer_media_types(image)
        if row.kind == "cold":  # what compression costs a node: the same blobs decompressed alone
            layers = {d: t for d, t in layer_types(image).items() if d in blobs}
            row.decompress_s = decompress_seconds(image, list(layers), layers)
        with Node() as node:
            ctr = ["ctr", "--address", str(node.socket), "--namespace", "node"]
            if row.kind == "update":
                code, _ = node.pull(v1, self.logfile(f"pull-{row.variant}-update-v1"))
                if code != 0:
                    raise RuntimeError(f"pulling {v1} failed")
            logfile = self.logfile(f"pull-{row.variant}-{row.kind}-fetch")
            code, row.fetch_s = run_logged([*ctr, "content", "fetch", "--plain-http", image], logfile, timeout=1800)
            if code != 0:
                raise RuntimeError(f"ctr content fetch: {error_summary(logfile)}")
            logfile = self.logfile(f"pull-{row.variant}-{row.kind}-unpack")
            code, row.unpack_s = node.pull(image, logfile)  # every blob is there: only unpacking remains
            if code != 0:
                raise RuntimeError(f"ctr images pull: {error_summary(logfile)}")
        row.seconds, row.ok = row.fetch_s + row.unpack_s, True

    # ------------------------------------------------------------------ Ray on three nodes

    def part_nodes(self) -> None:
        assert self.registry is not None
        modes = tuple(m for m in MODES if m in (self.opts.mode or MODES))
        # --mode measures some modes again; the others' rows of the previous results stay.
        rows: list[Any] = [r for r in (self.results.get("nodes") or {}).get("rows", []) if r["mode"] not in modes]
        pair = self.pushed.get("raybake")
        check_disk("the Ray nodes")
        wait_for_quiet_machine(self.opts.no_wait)
        driver = WORK / "heavy-driver"
        driver.mkdir(parents=True, exist_ok=True)
        (driver / "trainers.py").write_text(DRIVER)
        heavy_version = locked_version(self.workload.copy(WORK / "heavy-probe"), self.workload.heavy)
        requirement = f"{self.workload.heavy}=={heavy_version}"
        extra = {k: v for k, v in (self.results.get("nodes") or {}).items()
                 if k in ("engine_pull_s", "container_start_s")}
        with ThrowawayEngine("nodes", (self.base,)):
            images: dict[str, str | None] = {"prebuilt": None, "ray_only": None}
            if pair and pair[0]:
                start = time.perf_counter()
                code, _ = run_logged(["docker", "pull", pair[0]], self.logfile("nodes-pull"), timeout=1800)
                if code == 0:
                    images["prebuilt"] = pair[0]
                extra["engine_pull_s"] = round(time.perf_counter() - start, 1)
            elif "prebuilt" in modes:  # no build part in this run: built here, not timed
                code, _, ref, _ = self.build_once("raybake", self.workload.copy(WORK / "heavy-nodes-app"),
                                                  "heavy-torch-app", "nodes-image", None)
                images["prebuilt"] = ref if code == 0 else None
            if images["prebuilt"]:
                # Container start: `docker run` of the image until its process has run.
                start = time.perf_counter()
                run_logged(["docker", "run", "--rm", "--network", "none", images["prebuilt"], "/opt/venv/bin/python",
                            "-c", "pass"], self.logfile("nodes-container-start"), timeout=300)
                extra["container_start_s"] = round(time.perf_counter() - start, 2)
            ray_only = self.ray_only_project()
            code, _, ref, logfile = self.build_once("raybake", ray_only, "heavy-ray-only", "ray-only", None)
            images["ray_only"] = ref if code == 0 else None
            for mode in modes:
                image = images["prebuilt" if mode == "prebuilt" else "ray_only"]
                runtime_env = {"prebuilt": {}, "uv": {"uv": [requirement]},
                               "uv_run": {"py_executable": f"uv run --with {requirement} python"}}[mode]
                row = RayRow(mode, ok=False, image=image, runtime_env=runtime_env)
                rows.append(row)
                if image is None:
                    row.error = "no image (see the build logs)"
                    continue
                check_disk(f"Ray {mode}", minimum=15)
                wait_for_quiet_machine(self.opts.no_wait)
                log(f"Ray on {WORKER_NODES + 1} nodes, {MODE_LABELS[mode]} ...")
                self.ray_once(row, driver)
                log(f"  {mode}: {row.status}, ready {row.ready_s}, registered {row.registered_s}, "
                    f"imported {row.imported_s}, {row.register_timeouts} registration timeouts"
                    + (f", {row.error}" if row.error else ""))
                self.record("nodes", rows, extra)
        self.record("nodes", rows, extra)

    def ray_only_project(self) -> Path:
        project = WORK / "heavy-ray-only"
        project.mkdir(parents=True, exist_ok=True)
        (project / "pyproject.toml").write_text('[project]\nname = "ray-only"\nversion = "0.1.0"\n'
                                                'requires-python = ">=3.11"\ndependencies = ["ray[default]==2.60.0"]\n')
        (project / ".python-version").write_text("3.11\n")
        if not (project / "uv.lock").exists():
            uv_lock(project, self.logfile("ray-only-lock"))
        return project

    def ray_once(self, row: RayRow, driver: Path) -> None:
        from ray.job_submission import JobSubmissionClient

        logfile = self.logfile(f"nodes-{row.mode}")
        row.log = str(logfile.relative_to(REPO))
        env = {"SSL_CERT_FILE": CONTAINER_CA, "PIP_CERT": CONTAINER_CA,
               "RAY_worker_register_timeout_seconds": str(REGISTER_TIMEOUT_S)}
        lines: list[str] = []
        tail = ""
        try:
            start = time.perf_counter()
            with local_cluster(row.image, workers=WORKER_NODES, cpus_per_node=2, env=env,
                               mounts=((CA_BUNDLE, CONTAINER_CA), (driver, "/bench"))) as cluster:
                row.cluster_start_s = round(time.perf_counter() - start, 1)
                try:
                    client = JobSubmissionClient(cluster.address)
                    entrypoint = shlex.join(["/opt/venv/bin/python", "/bench/trainers.py", json.dumps(row.runtime_env),
                                             str(ACTORS_PER_NODE), self.workload.heavy])
                    start = time.perf_counter()
                    job = client.submit_job(entrypoint=entrypoint)
                    status = client.get_job_status(job)
                    short = False
                    while not status.is_terminal() and time.perf_counter() < start + MODE_TIMEOUT:
                        if free_gb() < MIN_FREE_DURING_RAY_GB:
                            short = True
                            break
                        time.sleep(1)
                        status = client.get_job_status(job)
                    lines = client.get_job_logs(job).splitlines()
                    if not status.is_terminal():
                        client.stop_job(job)
                        row.status = "stopped: disk short" if short else f"still installing after {MODE_TIMEOUT} s"
                        row.error = row.status
                        return
                    result = next((json.loads(line.split(" ", 1)[1]) for line in lines
                                   if line.startswith("BENCH_RESULT ")), None)
                    if str(status.value) != "SUCCEEDED" or result is None:
                        message = client.get_job_info(job).message or ""
                        hits = [x for x in lines if "Error" in x] or [message]
                        raise RuntimeError(f"job {status.value}: {hits[-1][:300]}")
                    infos, t0 = result["actors"], result["t0"]
                    row.ok, row.status, row.actors = True, "done", len(infos)
                    row.ready_s = round(result["end"] - t0, 1)
                    row.registered_s = round(max(i["started"] for i in infos) - t0, 1)
                    row.imported_s = round(max(i["imported"] for i in infos) - t0, 1)
                    row.versions = sorted({i["version"] for i in infos})
                finally:
                    row.register_timeouts = sum(node_logs(c, REGISTER_TIMEOUT_MESSAGE).count(REGISTER_TIMEOUT_MESSAGE)
                                                for c in cluster.containers)
                    if not row.ok:
                        tail = "\n".join(f"--- node {i} ---\n{node_logs(c)}" for i, c in enumerate(cluster.containers))
        except Exception as exc:  # noqa: BLE001 - recorded as failed
            row.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
        finally:
            logfile.parent.mkdir(parents=True, exist_ok=True)
            logfile.write_text("\n".join(lines) + ("\n\n--- Ray logs of the nodes ---\n" + tail if tail else "\n"))


# --------------------------------------------------------------------------- report

def _gb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e9:.2f} GB"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def _rows(results: dict[str, Any], part: str) -> list[dict[str, Any]]:
    return (results.get(part) or {}).get("rows", [])


def _find(rows: list[dict[str, Any]], **match: str) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """#23's targets: (name, value, limit, met)."""
    builds = _rows(results, "build")
    out: list[dict[str, Any]] = []

    def secs(tool: str, scenario: str, part: str = "build") -> float | None:
        row = _find(_rows(results, part), tool=tool, scenario=scenario)
        return row["seconds"] if row and row["ok"] else None

    def add(name: str, value: float | None, limit: float, higher_is_better: bool = False) -> None:
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        out.append({"target": name, "value": value, "limit": limit, "met": met})

    if builds:
        add("cold build <= 0.8 x (b)", _ratio(secs("raybake", "cold"), secs("uv", "cold")), 0.8)
        for tool in ("raybake_zstd", "raybake_gzip1"):  # the zstd part's cold builds, against the same (b)
            add(f"cold build <= 0.8 x (b), {TOOL_LABELS[tool].removeprefix('raybake, ')}",
                _ratio(secs(tool, "cold", "zstd"), secs("uv", "cold")), 0.8)
        add("small dependency added <= 1/10 of (b)", _ratio(secs("raybake", "small_dep"), secs("uv", "small_dep")), 0.1)
        add("runtime apt package added <= 1/10 of (b)",
            _ratio(secs("raybake", "runtime_apt"), secs("uv", "runtime_apt")), 0.1)
    fresh = _find(_rows(results, "fresh"), tool="raybake")
    if fresh:
        add("fresh runner small dependency <= 1.5 x warm",
            _ratio(fresh["seconds"] if fresh["ok"] else None, secs("raybake", "small_dep")), 1.5)
    update = _find(_rows(results, "pull"), variant="raybake", kind="update")
    if update:
        add("node update after a small dependency <= 1% of the image's bytes",
            _ratio(update["bytes"], update["image_bytes"]) if update["ok"] else None, 0.01)
    nodes = _rows(results, "nodes")
    if nodes:
        pre, uv = _find(nodes, mode="prebuilt"), _find(nodes, mode="uv")
        uv_time = uv["ready_s"] if uv and uv["ok"] else (MODE_TIMEOUT if uv and "still" in uv["status"] else None)
        add("3 nodes: prebuilt >= 10 x faster than runtime_env uv (uv: at least its bound when unfinished)",
            _ratio(uv_time, pre["ready_s"] if pre and pre["ok"] else None), 10, higher_is_better=True)
        add("3 nodes: prebuilt workers past the registration timeout = 0",
            pre["register_timeouts"] if pre and pre["ok"] else None, 0)
    return out


def markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    out = [f"# raybake heavy benchmark ({meta.get('date', '?')})", "",
           f"Workload: `benchmarks/torch-app` ({meta.get('workload', '?')}); {meta.get('cpus', '?')} CPUs, "
           f"Docker {meta.get('docker', '?')}, every build on a throwaway engine. "
           f"`{meta.get('command', '')}`", ""]
    builds = _rows(results, "build") + _rows(results, "zstd")
    if builds:
        minor = (results.get("build") or {}).get("minor")
        labels = {"cold": "cold build (empty engine)", "small_dep": f"small dependency added ({SMALL_DEP})",
                  "runtime_apt": f"runtime apt package added ({RUNTIME_APT})",
                  "minor": f"torch's minor version changed (to {minor})"}
        out += ["| build, wall time (new layers) | raybake | raybake, zstd | (b) uv single layer | raybake/(b) |",
                "|---|---:|---:|---:|---:|"]
        for scenario in SCENARIOS:
            cells, values = [], {}
            for tool in ("raybake", "raybake_zstd", "uv"):
                row = _find(builds, tool=tool, scenario=scenario)
                if row is None:
                    cells.append("–")
                elif not row["ok"]:
                    cells.append("failed")
                else:
                    values[tool] = row["seconds"]
                    cells.append(f"{row['seconds']:.1f} s ({_gb(row['changed_bytes'])})")
            ratio = _ratio(values.get("raybake"), values.get("uv"))
            out.append(f"| {labels[scenario]} | {' | '.join(cells)} | {'–' if ratio is None else f'{ratio:.2f}'} |")
        sizes = []
        for tool in ("raybake", "raybake_zstd", "uv"):
            row = _find(builds, tool=tool, scenario="cold")
            sizes.append(f"{_gb(row['image_size'])} ({_gb(row['unpacked_size'])} unpacked, {row['layers']} layers)"
                         if row and row["ok"] else "–")
        out += [f"| image size, compressed | {' | '.join(sizes)} | |", ""]
        out += [f"- {TOOL_LABELS[r['tool']]}, {r['scenario']}: {note}" for r in builds for note in r.get("notes", [])]
        out += [""] if out[-1] != "" else []
        out += ["| cold build phases (BuildKit plain log) | download | install | bytecode | layer compression "
                "| unpack into the store | rest | total |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for tool in ("raybake", "raybake_zstd", "uv"):
            row = _find(builds, tool=tool, scenario="cold")
            if row and row["ok"] and row["phases"]:
                p = row["phases"]
                known = sum(p[k] for k in ("download", "install", "bytecode", "compression", "unpack"))
                out.append(f"| {TOOL_LABELS[tool]} | {_s(p['download'])} | {_s(p['install'])} | {_s(p['bytecode'])} "
                           f"| {_s(p['compression'])} | {_s(p['unpack'])} | {_s(row['seconds'] - known)} "
                           f"| {_s(row['seconds'])} |")
        out += ["", "Download and install are uv's own `Prepared`/`Installed` lines summed over the steps (a step's "
                "download overlaps its build of sdists; raybake's layers run one after another), layer "
                "compression BuildKit's `exporting layers`, unpacking its `unpacking to` (raybake also verifies "
                "the image: part of the rest).", ""]
    compression = _rows(results, "zstd")
    if compression:
        out += ["| compression, back to back (`zstd` part) | cold build | of it: layer compression | unpack into the store "
                "| image, compressed | small dependency added |", "|---|---:|---:|---:|---:|---:|"]
        # Plain gzip comes from the build part when both ran in one run (then the zstd part skips it).
        gzip_rows = compression if _find(compression, tool="raybake") else _rows(results, "build")
        for tool in ("raybake", "raybake_zstd", "raybake_gzip1"):
            rows = gzip_rows if tool == "raybake" else compression
            cold, small = (_find(rows, tool=tool, scenario=sc) for sc in ("cold", "small_dep"))
            if cold and cold["ok"]:
                out.append(f"| {TOOL_LABELS[tool]} | {_s(cold['seconds'])} | {_s(cold['phases']['compression'])} "
                           f"| {_s(cold['phases']['unpack'])} | {_gb(cold['image_size'])} "
                           f"| {_s(small['seconds']) if small and small['ok'] else '–'} |")
        out.append("")
    fresh = _rows(results, "fresh")
    if fresh:
        out += ["| fresh CI runner, small dependency added, registry cache only | wall time | against warm |",
                "|---|---:|---:|"]
        for row in fresh:
            warm = _find(_rows(results, "build"), tool=row["tool"], scenario="small_dep")
            ratio = _ratio(row["seconds"] if row["ok"] else None, warm["seconds"] if warm and warm["ok"] else None)
            out.append(f"| {TOOL_LABELS[row['tool']]} | {_s(row['seconds']) if row['ok'] else 'failed: ' + str(row['error'])[:80]} "
                       f"| {'–' if ratio is None else f'{ratio:.2f} x'} |")
        out.append("")
    pulls = _rows(results, "pull")
    if pulls:
        out += ["| what a node pulls (empty containerd) | bytes | fetch | unpack | decompress alone | of the image |",
                "|---|---:|---:|---:|---:|---:|"]
        for row in pulls:
            label = f"{TOOL_LABELS[row['variant']]}, {'cold node' if row['kind'] == 'cold' else 'update (small dependency)'}"
            if not row["ok"]:
                out.append(f"| {label} | {str(row['error'])[:80]} | | | | |")
                continue
            share = _ratio(row["bytes"], row["image_bytes"])
            out.append(f"| {label} | {_gb(row['bytes'])} | {_s(row['fetch_s'])} | {_s(row['unpack_s'])} "
                       f"| {_s(row['decompress_s'])} | {share:.1%} |")
        out.append("")
    nodes = results.get("nodes")
    if nodes:
        out += [f"| Ray on 3 nodes, {ACTORS_PER_NODE} actors per node, `import torch` and a step | status | all done "
                "| last worker registered | last import done | registration timeouts |", "|---|---|---:|---:|---:|---:|"]
        for row in sorted(nodes["rows"], key=lambda r: MODES.index(r["mode"])):
            out.append(f"| {MODE_LABELS[row['mode']]} | {row['status'] if row['ok'] or 'still' in row['status'] else 'failed: ' + str(row['error'])[:80]} "
                       f"| {_s(row['ready_s'])} | {_s(row['registered_s'])} | {_s(row['imported_s'])} "
                       f"| {row['register_timeouts'] if row['register_timeouts'] is not None else '–'} |")
        out.append("")
        cold = _find(pulls, variant="raybake", kind="cold")
        pre = _find(nodes["rows"], mode="prebuilt")
        if cold and cold["ok"] and pre and pre["ok"]:
            out += ["| cold node, prebuilt image | pull (fetch) | unpack | container start | Ray cluster up "
                    "| last worker registered | last `import torch` done |", "|---|---:|---:|---:|---:|---:|---:|",
                    f"| seconds | {_s(cold['fetch_s'])} | {_s(cold['unpack_s'])} | "
                    f"{_s(nodes.get('container_start_s'))} | {_s(pre['cluster_start_s'])} | {_s(pre['registered_s'])} "
                    f"| {_s(pre['imported_s'])} |", ""]
    tgts = results.get("targets") or []
    if tgts:
        out += ["| #23 target | value | met |", "|---|---:|---|"]
        for t in tgts:
            value = "–" if t["value"] is None else f"{t['value']:.3g}"
            out.append(f"| {t['target']} | {value} | {'–' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
        out.append("")
    ran = [p for p in PARTS if p in results]
    out.append(f"Parts in these results: {', '.join(ran) or 'none'}; not run: "
               f"{', '.join(p for p in PARTS if p not in results) or 'none'}.")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="only these parts (repeatable); the others' previous results in heavy.json are kept. "
                             "fresh and pull need the images the build/zstd parts push in the same run")
    parser.add_argument("--small", action="store_true",
                        help="a light stand-in (numpy for torch) to try the code paths; results go to work/")
    parser.add_argument("--mode", choices=MODES, action="append",
                        help="nodes part: only these start-up modes (repeatable); the others' rows are kept")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a running pytest to end")
    opts = parser.parse_args()
    parts = tuple(p for p in PARTS if p in (opts.only or PARTS))
    facts = engine_facts()
    base = os.environ.get("RAYBAKE_BASE_IMAGE") or facts.get("RAYBAKE_TEST_BASE_IMAGE") or \
        "raybake-test/bookworm-python:3.11"
    if docker.local_image_id(base) is None:
        sys.exit(f"error: the base image {base} is not in the local store\nfix: bash buildkit/engine-up")
    for d in (WORK, LOGS, RESULTS):
        d.mkdir(parents=True, exist_ok=True)
    out_dir = WORK if opts.small else RESULTS
    json_path, md_path = out_dir / "heavy.json", out_dir / "heavy.md"
    results: dict[str, Any] = {}
    if opts.only and json_path.exists():
        results = json.loads(json_path.read_text())
    results["stopped"] = [s for s in results.get("stopped", []) if s["part"] not in parts]
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(),
        "docker": capture(["docker", "version", "--format", "{{.Server.Version}}"], check=False),
        "base_image": base, "workload": "stand-in: numpy" if opts.small else
        f"ray[default], torch with its nvidia-* wheels: {(TORCH_APP / 'uv.lock').read_text().count(chr(10) + '[[package]]')} "
        "locked packages",
        "command": f"uv run --frozen python benchmarks/heavy.py {' '.join(sys.argv[1:])}".strip(),
    }

    def save() -> None:
        results["targets"] = targets(results)
        json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        md_path.write_text(markdown(results))

    started = time.perf_counter()
    bench = Heavy(opts, parts, base, results, save)
    try:
        with ThrowawayRegistry() as registry:
            bench.registry = registry
            for part in parts:
                log(f"heavy part: {part}")
                try:
                    getattr(bench, f"part_{part}")()
                except DiskShort as exc:
                    log(f"STOPPED: {exc}")
                    results.setdefault("stopped", []).append({"part": part, "reason": str(exc)})
                    save()
                    break
                log(f"registry holds {registry.size_gb():.1f} GB")
    finally:
        results["meta"]["total_s"] = round(time.perf_counter() - started)
        save()
    print(md_path.read_text())
    print(f"written: {md_path}, {json_path} ({results['meta']['total_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    # A stopped run still removes its engines and registry (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
