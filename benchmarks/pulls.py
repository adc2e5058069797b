"""What a node pulls: bytes and the time to pull and unpack an image from the
local registry onto an empty store, for a cold node and for an update after
one small dependency was added; raybake (gzip and zstd layers) against the
two baselines.

The node is a containerd of its own (what Kubernetes nodes run), started
with an empty root for each measurement: nothing of the machine's Docker
store (the base image's layer, other images' blobs) is shared with it.
`ctr images pull` fetches every blob and unpacks it into the overlayfs
snapshotter, as a kubelet's pull does."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from builds import TOOL_LABELS, Baselines
from common import (
    LOGS,
    REPO,
    SMALL_DEP,
    WORK,
    add_dependency,
    error_summary,
    fresh_copy,
    log,
    raybake_build,
    raybake_env,
    run_logged,
    stop,
    wait_for_quiet_machine,
)

from images import layer_blobs, layer_media_types, layer_types, registry_blob, remove_images
from raybake.tools.run import run as run_command

VARIANTS = ("raybake", "raybake_zstd", "pip", "uv")
VARIANT_LABELS = {"raybake": "raybake (gzip)", "raybake_zstd": "raybake, `compression: zstd`",
                  "pip": TOOL_LABELS["pip"], "uv": TOOL_LABELS["uv"]}
KINDS = ("cold", "update")
KIND_LABELS = {"cold": "cold node (empty store)", "update": "update (one small dependency added)"}
PULL_TIMEOUT = 900
NODE_CONFIG = """version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{root}/containerd.sock"
[ttrpc]
  address = "{root}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


@dataclass
class PullRow:
    run: int
    variant: str
    kind: str
    ok: bool
    image: str | None = None
    bytes: int | None = None  # compressed blobs the node must fetch (config included)
    seconds: float | None = None  # `ctr images pull`: fetch and unpack
    decompress_s: float | None = None  # decompressing the same layer blobs alone, one after another
    media_types: list[str] | None = None
    error: str | None = None
    log: str | None = None


class Node:
    """A containerd with an empty store, on a socket of its own; removed on exit."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="raybake-bench-node-", dir="/var/tmp"))
        self.socket = self.root / "containerd.sock"
        (self.root / "config.toml").write_text(NODE_CONFIG.format(root=self.root))
        self.logfile = (self.root / "containerd.log").open("w")
        # A daemon for the length of one measurement: raybake.tools.run only runs commands to their end.
        self.proc = subprocess.Popen(["containerd", "--config", str(self.root / "config.toml")],
                                     stdout=self.logfile, stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self) -> Node:
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start: {(self.root / 'containerd.log').read_text()[-500:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)
        self.logfile.close()
        # The snapshotter's mounts are gone with containerd; the tree is plain files now.
        shutil.rmtree(self.root, ignore_errors=True)

    def pull(self, reference: str, logfile: Path) -> tuple[int, float]:
        return run_logged(["ctr", "--address", str(self.socket), "--namespace", "node", "images", "pull",
                           "--plain-http", reference], logfile, timeout=PULL_TIMEOUT)


def decompress_seconds(reference: str, digests: list[str], media_types: dict[str, str]) -> float:
    """Seconds to decompress ``digests`` (fetched first, not timed) with gzip or zstd
    to /dev/null: the CPU part of an unpack that zstd makes cheaper."""
    with tempfile.TemporaryDirectory(prefix="raybake-bench-blobs-", dir="/var/tmp") as tmp:
        files = []
        for digest in digests:
            path = Path(tmp) / digest.replace(":", "-")
            registry_blob(reference, digest, path)
            files.append((path, "zstd" if media_types[digest].endswith("zstd") else "gzip"))
        start = time.perf_counter()
        for path, tool in files:
            run_command(["sh", "-c", f'{tool} -dc "$1" > /dev/null', "sh", str(path)], timeout=600)
        return time.perf_counter() - start


class PullBench:
    def __init__(self, opts: argparse.Namespace, base_image: str, stamp: str, registry: str,
                 pushed: dict[str, tuple[str, str]]):
        self.opts = opts
        self.base = base_image
        self.stamp = stamp
        self.registry = registry
        self.images: dict[str, tuple[str, str] | str] = dict(pushed)  # variant -> (v1, v2) or the error
        self.rows: list[PullRow] = []

    def raybake_pair(self, variant: str) -> tuple[str, str]:
        """Build and push v1 (the example's lock) and v2 (one small dependency added)."""
        project = fresh_copy(WORK / f"ray-app-pull-{variant}")
        if variant == "raybake_zstd":
            (project / "images").mkdir(exist_ok=True)  # the example has images/ (a matrix)
            (project / "images" / "default.yaml").write_text("compression: zstd\n")
        env = raybake_env(self.base, f"{self.registry}/raybake-bench/pull-{variant}-{self.stamp}")
        refs = []
        for version in ("v1", "v2"):
            if version == "v2":
                add_dependency(project, SMALL_DEP, LOGS / f"{self.stamp}-pull-{variant}-lock.log")
            logfile = LOGS / f"{self.stamp}-pull-{variant}-{version}.log"
            code, _, ref = raybake_build(project, env, logfile, "--push")
            if code != 0 or ref is None:
                raise RuntimeError(f"raybake build --push failed: {error_summary(logfile)}")
            refs.append(ref)
            if not self.opts.keep_images:
                remove_images([ref])
        return refs[0], refs[1]

    def baseline_pair(self, tool: str) -> tuple[str, str]:
        baselines = Baselines(self.base)
        project = fresh_copy(WORK / f"ray-app-pull-{tool}")
        target = f"{self.registry}/raybake-bench/pull-{tool}-{self.stamp}"
        for version in ("v1", "v2"):
            if version == "v2":
                add_dependency(project, SMALL_DEP, LOGS / f"{self.stamp}-pull-{tool}-lock.log")
            logfile = LOGS / f"{self.stamp}-pull-{tool}-{version}.log"
            code, _ = run_logged(baselines.argv(tool, project, f"{target}:{version}", "--output",
                                                "type=image,push=true"), logfile)
            if code != 0:
                raise RuntimeError(f"building {tool} failed: {error_summary(logfile)}")
            remove_images([f"{target}:{version}"])
        return f"{target}:v1", f"{target}:v2"

    def prepare(self) -> None:
        for variant in VARIANTS:
            if variant in self.images:
                continue
            wait_for_quiet_machine(self.opts.no_wait)
            log(f"node pulls: building and pushing {VARIANT_LABELS[variant]} v1 and v2")
            try:
                self.images[variant] = (self.raybake_pair(variant) if variant.startswith("raybake")
                                        else self.baseline_pair(variant))
            except Exception as exc:  # noqa: BLE001 - the variant is reported failed
                self.images[variant] = str(exc)
                log(f"  FAILED: {exc}")

    def measure(self, run: int, variant: str, kind: str) -> PullRow:
        images = self.images[variant]
        row = PullRow(run, variant, kind, ok=False)
        if isinstance(images, str):
            row.error = f"no image: {images}"
            return row
        v1, v2 = images
        logfile = LOGS / f"{self.stamp}-r{run}-pull-{variant}-{kind}.log"
        row.log, row.image = str(logfile.relative_to(REPO)), v1 if kind == "cold" else v2
        try:
            blobs = layer_blobs(row.image)
            if kind == "update":
                before = layer_blobs(v1)
                blobs = {d: s for d, s in blobs.items() if d not in before}
            row.bytes, row.media_types = sum(blobs.values()), layer_media_types(row.image)
            layers = {d: t for d, t in layer_types(row.image).items() if d in blobs}
            row.decompress_s = decompress_seconds(row.image, list(layers), layers)
            with Node() as node:
                if kind == "update":
                    code, _ = node.pull(v1, LOGS / f"{self.stamp}-r{run}-pull-{variant}-update-v1.log")
                    if code != 0:
                        raise RuntimeError(f"pulling {v1} failed")
                code, row.seconds = node.pull(row.image, logfile)
            if code != 0:
                raise RuntimeError(f"exit {code}: {error_summary(logfile)}")
            row.ok = True
        except Exception as exc:  # noqa: BLE001 - recorded as failed
            row.error = str(exc)[:400]
        return row

    def run(self) -> list[PullRow]:
        self.prepare()
        for run in range(1, self.opts.pull_runs + 1):
            wait_for_quiet_machine(self.opts.no_wait)
            for variant in VARIANTS:
                for kind in KINDS:
                    row = self.measure(run, variant, kind)
                    self.rows.append(row)
                    if row.ok:
                        log(f"run {run}, pull {VARIANT_LABELS[variant]}, {kind}: {row.bytes / 1e6:.0f} MB "
                            f"in {row.seconds:.1f} s")
                    else:
                        log(f"run {run}, pull {VARIANT_LABELS[variant]}, {kind}: FAILED ({row.error})")
        return self.rows
