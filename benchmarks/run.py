"""raybake benchmarks: image builds against two baselines, and Ray start-up (not a test).

    make bench                                   # = uv run --frozen --with matplotlib python benchmarks/run.py
    uv run --frozen --with matplotlib python benchmarks/run.py --quick --only build

Build scenarios (on a copy of examples/ray-app under benchmarks/work/), for
raybake and the two Dockerfiles in benchmarks/baselines/, in this order per
tool: cold (BuildKit cache pruned, the tool's images removed), no-op rebuild,
source-only change, one small dependency added, one heavy dependency's version
changed. Metrics: wall time of the whole build command, bytes of the layers
whose diff ID is new compared with the previous image, final image size.

Ray start-up: 8 actors that import pandas and pyarrow on a fresh one-node Ray
cluster inside a container, with the dependencies (1) in the prebuilt raybake
image, (2) from runtime_env pip, (3) from runtime_env uv, (4) from a per-worker
`uv run --with ...` py_executable. A fresh head container per measurement means
empty per-node caches (Ray's runtime_resources, pip's and uv's caches).

Writes benchmarks/results/results.{md,json,png} and prints the Markdown.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
EXAMPLE = REPO / "examples" / "ray-app"
BASELINES = BENCH / "baselines"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
LOGS = WORK / "logs"
ENGINE_STATE = Path(os.environ.get("RAYBAKE_ENGINE_STATE", "/var/tmp/raybake-engine")) / "engine.env"
CA_BUNDLE = Path(os.environ.get("RAYBAKE_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
                 or "/etc/ssl/certs/ca-certificates.crt")
CONTAINER_CA = "/etc/ssl/certs/ca-certificates.crt"

SCENARIOS = ("cold", "noop", "source", "small_dep", "heavy_dep")
SCENARIO_LABELS = {"cold": "cold build", "noop": "no-op rebuild", "source": "source-only change",
                   "small_dep": "small dependency added (tabulate)", "heavy_dep": "heavy dependency changed (pandas)"}
TOOLS = ("raybake", "pip", "uv")
TOOL_LABELS = {"raybake": "raybake", "pip": "(a) COPY + pip install", "uv": "(b) uv single layer"}
SMALL_DEP = "tabulate"
BUILD_TIMEOUT = 1800
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

RAY_MODES = ("prebuilt", "pip", "uv", "uv_run")
RAY_MODE_LABELS = {"prebuilt": "(1) prebuilt raybake image", "pip": "(2) runtime_env pip",
                   "uv": "(3) runtime_env uv", "uv_run": "(4) py_executable `uv run --with`"}
RAY_MODE_NOTES = {
    "uv_run": "works because the image's VIRTUAL_ENV makes `uv run --with` layer pandas/pyarrow "
              "over /opt/venv (where ray is); 8 workers share uv's cache lock, one installs.",
}
RAY_ACTORS = 8
RAY_PACKAGES = ["pandas", "pyarrow"]
HEAD_START_TIMEOUT = 180
JOB_TIMEOUT = 1500

ACTORS_SCRIPT = '''\
"""8 actors that import pandas and pyarrow; prints the time until all are ready."""
import json
import sys
import time

import ray

runtime_env = json.loads(sys.argv[1])
n = int(sys.argv[2])
ray.init()


@ray.remote
class Worker:
    def __init__(self):
        import pandas
        import pyarrow

        self.info = {"python": sys.executable, "pandas": pandas.__version__, "pyarrow": pyarrow.__version__}

    def ready(self):
        return self.info


options = {"runtime_env": runtime_env} if runtime_env else {}
t0 = time.perf_counter()
actors = [Worker.options(**options).remote() for _ in range(n)]
infos = ray.get([a.ready.remote() for a in actors], timeout=1200)
elapsed = time.perf_counter() - t0
print("BENCH_RESULT " + json.dumps({
    "actors_ready_s": elapsed, "actors": len(infos),
    "pythons": sorted({i["python"] for i in infos}),
    "versions": sorted({f"pandas {i['pandas']}, pyarrow {i['pyarrow']}" for i in infos}),
}), flush=True)
'''


# --------------------------------------------------------------------------- helpers

def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: without the VIRTUAL_ENV of the outer
    `uv run --with matplotlib` (a nested `uv run` would warn about it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_RUN_RECURSION_DEPTH")}
    env.update(extra)
    return env


def run_logged(cmd: list[str], logfile: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = BUILD_TIMEOUT) -> tuple[int, float]:
    """Run ``cmd`` with stdout and stderr going to ``logfile``; (exit code, wall seconds)."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("w") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env or clean_env(),
                                  cwd=cwd, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -9
            out.write(f"\n[bench] timed out after {timeout:.0f} s\n")
        return code, time.perf_counter() - start


def capture(cmd: list[str], *, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 300) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or clean_env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.strip()


def tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def error_summary(path: Path) -> str:
    """The most telling line of a failed command's log, else its last lines."""
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    for pattern in ("error:", "ERROR", "Error", "failed"):
        hits = [line.strip() for line in text if pattern in line]
        if hits:
            return hits[-1][:400]
    return " | ".join(text[-3:])[:400]


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def engine_facts() -> dict[str, str]:
    values: dict[str, str] = {}
    if ENGINE_STATE.exists():
        values = dict(line.split("=", 1) for line in ENGINE_STATE.read_text().split() if "=" in line)
    return values


def uv_binary() -> str:
    import uv

    return uv.find_uv_bin()


def wait_for_quiet_machine(skip: bool) -> None:
    """Heavy builds wait while a test-suite run (pytest) is going on: 2 cores."""
    if skip:
        return
    waited = 0.0
    while True:
        proc = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True)
        pids = [p for p in proc.stdout.split() if int(p) not in (os.getpid(), os.getppid())]
        if not pids:
            if waited:
                log(f"the pytest run ended after {waited:.0f} s of waiting")
            return
        if waited % 60 == 0:
            log(f"a pytest run is going on (pids {' '.join(pids)}): waiting for it to end before building")
        time.sleep(10)
        waited += 10


# --------------------------------------------------------------------------- images and layers

def image_id(reference: str) -> str | None:
    proc = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", reference],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_size(reference: str) -> int:
    return int(capture(["docker", "image", "inspect", "--format", "{{.Size}}", reference]))


def image_layers(reference: str) -> list[tuple[str, int]]:
    """(diff ID, size in bytes) of each non-empty layer, lowest first.

    `docker history` lists the config's history newest first, empty layers
    (ENV, LABEL, ...) with size 0; the layers with content map in order onto
    RootFS.Layers without the empty-tar diff ID."""
    diff_ids = json.loads(capture(["docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", reference]))
    sizes = [int(s) for s in capture(["docker", "history", "--no-trunc", "--human=false", "--format", "{{.Size}}",
                                      reference]).split()][::-1]
    nonzero = [s for s in sizes if s > 0]
    if len(diff_ids) == len(nonzero):  # an empty-tar layer (WORKDIR of an existing dir) has a size too
        return list(zip(diff_ids, nonzero))
    real = [d for d in diff_ids if d != EMPTY_LAYER]
    if len(real) != len(nonzero):  # cannot map: sizes unknown, count the layers only
        return [(d, -1) for d in real]
    return list(zip(real, nonzero))


def changed_layers(reference: str, previous: str) -> tuple[int, int]:
    """(number, bytes) of the layers of ``reference`` whose diff ID ``previous`` lacks."""
    before = {d for d, _ in image_layers(previous)}
    new = [(d, s) for d, s in image_layers(reference) if d not in before]
    return len(new), sum(max(s, 0) for _, s in new)


def unpacked_size(reference: str) -> int:
    return sum(max(s, 0) for _, s in image_layers(reference))


def images_matching(prefixes: tuple[str, ...]) -> list[str]:
    out = capture(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"])
    return [ref for ref in out.splitlines() if ref.startswith(prefixes) and not ref.endswith(":<none>")]


def remove_images(refs: list[str]) -> None:
    for ref in refs:
        subprocess.run(["docker", "rmi", ref], capture_output=True, text=True)


def other_refs_of(image: str, own_prefix: str) -> list[str]:
    """Tags outside the benchmark that point at the same image (content already in the store)."""
    iid = image_id(image)
    out = capture(["docker", "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"])
    return [line.split(" ", 1)[1] for line in out.splitlines()
            if line.split(" ", 1)[0] == iid and not line.split(" ", 1)[1].startswith(own_prefix)]


# --------------------------------------------------------------------------- the workload

def fresh_copy(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "dist"))
    return dest


def uv_lock(project: Path, logfile: Path) -> None:
    code, _ = run_logged([uv_binary(), "lock", "--directory", str(project)], logfile, timeout=600)
    if code != 0:
        raise RuntimeError(f"uv lock failed in {project}: {error_summary(logfile)}")


def edit_source(project: Path, n: int) -> None:
    stats = project / "src" / "ray_app" / "stats.py"
    stats.write_text(stats.read_text() + f"\n\nBENCHMARK_EDIT = {n}  # source-only change\n")


def add_dependency(project: Path, requirement: str, logfile: Path) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    new = re.sub(r'(dependencies = \[\n(?:    "[^"]*",\n)*)', lambda m: m.group(1) + f'    "{requirement}",\n',
                 text, count=1)
    if new == text:
        raise RuntimeError("could not add a dependency to pyproject.toml")
    pyproject.write_text(new)
    uv_lock(project, logfile)


def pin_dependency(project: Path, name: str, version: str, logfile: Path) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    new = re.sub(rf'"{name}[<>=!~][^"]*"', f'"{name}=={version}"', text, count=1)
    if new == text:
        raise RuntimeError(f"could not pin {name} in pyproject.toml")
    pyproject.write_text(new)
    uv_lock(project, logfile)


def locked_version(project: Path, name: str) -> str:
    m = re.search(rf'\nname = "{re.escape(name)}"\nversion = "([^"]+)"', (project / "uv.lock").read_text())
    if not m:
        raise RuntimeError(f"{name} is not in {project}/uv.lock")
    return m.group(1)


def previous_release(name: str, current: str) -> str:
    """The newest final release of ``name`` before ``current`` with a CPython 3.11
    wheel for this machine (PyPI's JSON simple API, one request)."""
    from packaging.version import Version

    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine().lower()]
    req = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        data = json.load(resp)
    with_wheel = set()
    for f in data.get("files", []):
        fn = f["filename"]
        if fn.endswith(".whl") and "-cp311-" in fn and "manylinux" in fn and arch in fn and not f.get("yanked"):
            with_wheel.add(fn.split("-")[1])
    cur = Version(current)
    candidates = sorted((Version(v) for v in with_wheel), reverse=True)
    for v in candidates:
        if v < cur and not v.is_prerelease and not v.is_devrelease:
            return str(v)
    raise RuntimeError(f"no release of {name} before {current} with a cp311 {arch} wheel")


# --------------------------------------------------------------------------- build benchmark

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
    error: str | None = None
    log: str | None = None
    notes: list[str] = field(default_factory=list)


class BuildBench:
    def __init__(self, opts: argparse.Namespace, base_image: str, stamp: str):
        self.opts = opts
        self.base = base_image
        self.stamp = stamp
        self.uv_ctx = WORK / "uv-context"
        self.uv_ctx.mkdir(parents=True, exist_ok=True)
        shutil.copy2(uv_binary(), self.uv_ctx / "uv")
        # The baselines get the proxy CA the way raybake does: bound from a named context.
        self.ca_ctx = WORK / "ca-context"
        self.ca_ctx.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CA_BUNDLE, self.ca_ctx / "ca.pem")
        self.rows: list[BuildRow] = []
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

    # Each tool: how to build the project at `project`, returning the reference built.
    def build(self, tool: str, project: Path, run: int, scenario: str, logfile: Path,
              series: dict[str, Any]) -> tuple[int, float, str | None]:
        if tool == "raybake":
            env = clean_env(RAYBAKE_BASE_IMAGE=self.base, RAYBAKE_NETWORK="host",
                            RAYBAKE_REPOSITORY=series["repository"], RAYBAKE_CA_BUNDLE=str(CA_BUNDLE),
                            RAYBAKE_CACHE_DIR=str(series["cache_dir"]))
            code, seconds = run_logged([uv_binary(), "run", "--frozen", "raybake", "build", "-C", str(project)],
                                       logfile, env=env, cwd=REPO)
            ref = None
            if code == 0:
                ref = capture([uv_binary(), "run", "--frozen", "raybake", "tag", "-C", str(project)], env=env)
                ref = ref.splitlines()[-1].strip()
            return code, seconds, ref
        tag = f"raybake-bench/{tool}:{self.stamp}-r{run}-{scenario}"
        cmd = ["docker", "buildx", "build", "--network", "host", "--load", "--progress", "plain",
               "-t", tag, "-f", str(BASELINES / f"{tool}.Dockerfile"),
               "--build-context", f"ca={self.ca_ctx}", "--build-arg", f"BASE_IMAGE={self.base}"]
        if tool == "uv":
            cmd += ["--build-context", f"uv={self.uv_ctx}"]
        code, seconds = run_logged([*cmd, str(project)], logfile)
        return code, seconds, tag if code == 0 else None

    def cold_reset(self, tool: str) -> None:
        """No BuildKit cache (uv's cache mounts included) and none of the tool's images."""
        prefixes = {"raybake": ("raybake-bench/rb-", "raybake-bench/ray-app:"),
                    "pip": ("raybake-bench/pip:",), "uv": ("raybake-bench/uv:",)}[tool]
        refs = images_matching(prefixes)
        if tool == "raybake":
            # raybake's builds are reproducible: an example image left by `make example` or
            # the tests would hold the very layer blobs the cold build is to produce.
            refs += capture(["docker", "images", "--filter", "label=dev.raybake.project=ray-app",
                             "--format", "{{.Repository}}:{{.Tag}}"]).split()
        remove_images(refs)
        subprocess.run(["docker", "image", "prune", "-f"], capture_output=True, text=True)
        subprocess.run(["docker", "buildx", "prune", "-af"], capture_output=True, text=True)

    def series(self, tool: str, run: int) -> None:
        wait_for_quiet_machine(self.opts.no_wait)
        project = fresh_copy(WORK / f"ray-app-{tool}")
        series = {"repository": f"raybake-bench/rb-{self.stamp}-r{run}",
                  "cache_dir": WORK / "raybake-cache" / f"{self.stamp}-r{run}"}
        if series["cache_dir"].exists():
            shutil.rmtree(series["cache_dir"])
        previous: str | None = None
        log(f"run {run}, {TOOL_LABELS[tool]}: clearing caches for the cold build")
        self.cold_reset(tool)
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
            if scenario == "cold" and tool == "raybake":
                others = other_refs_of(ref, "raybake-bench/")
                if others:
                    row.notes.append("an identical image was already in the store (tagged "
                                     f"{', '.join(others[:3])}): its layer blobs did not have to be unpacked again")
            self.rows.append(row)
            previous = ref
            log(f"  {scenario}: {seconds:.2f} s, {row.changed_layers} new layers, "
                f"{row.changed_bytes / 1e6:.0f} MB, image {row.image_size / 1e6:.0f} MB")

    def run(self) -> list[BuildRow]:
        self.prepare()
        for run in range(1, self.opts.runs + 1):
            for tool in TOOLS:
                self.series(tool, run)
        if not self.opts.keep_images:
            remove_images(images_matching(("raybake-bench/rb-", "raybake-bench/pip:", "raybake-bench/uv:")))
        return self.rows


# --------------------------------------------------------------------------- Ray start-up benchmark

@dataclass
class RayRow:
    run: int
    mode: str
    ok: bool
    image: str | None = None
    runtime_env: dict[str, Any] | None = None
    actors_ready_s: float | None = None
    job_s: float | None = None
    head_start_s: float | None = None
    pythons: list[str] | None = None
    versions: list[str] | None = None
    error: str | None = None
    log: str | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayBench:
    def __init__(self, opts: argparse.Namespace, base_image: str, stamp: str):
        self.opts = opts
        self.base = base_image
        self.stamp = stamp
        self.rows: list[RayRow] = []
        self.driver_dir = WORK / "ray-driver"

    def raybake_image(self, project: Path, repository: str, logfile: Path) -> str:
        """Build (when absent) the raybake image of ``project``; not timed."""
        env = clean_env(RAYBAKE_BASE_IMAGE=self.base, RAYBAKE_NETWORK="host", RAYBAKE_REPOSITORY=repository,
                        RAYBAKE_CA_BUNDLE=str(CA_BUNDLE))
        code, seconds = run_logged([uv_binary(), "run", "--frozen", "raybake", "build", "-C", str(project)],
                                   logfile, env=env, cwd=REPO)
        if code != 0:
            raise RuntimeError(f"raybake build of {project.name} failed: {error_summary(logfile)}")
        ref = capture([uv_binary(), "run", "--frozen", "raybake", "tag", "-C", str(project)], env=env)
        log(f"image {ref.splitlines()[-1]} ready ({seconds:.0f} s)")
        return ref.splitlines()[-1].strip()

    def ray_only_project(self) -> Path:
        """A project whose lock holds only ray[default]==2.60.0 (the same Ray as the example)."""
        project = WORK / "ray-only"
        project.mkdir(parents=True, exist_ok=True)
        pyproject = ('[project]\nname = "ray-only"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
                     'dependencies = ["ray[default]==2.60.0"]\n')
        if not (project / "pyproject.toml").exists() or (project / "pyproject.toml").read_text() != pyproject:
            (project / "pyproject.toml").write_text(pyproject)
            (project / "uv.lock").unlink(missing_ok=True)
        (project / ".python-version").write_text("3.11\n")
        if not (project / "uv.lock").exists():
            uv_lock(project, LOGS / "ray-only-lock.log")
        return project

    def start_head(self, image: str, name: str) -> tuple[str, str]:
        """A one-node Ray head inside ``image`` on loopback; (container name, dashboard address).

        Like raybake.jobs.local_head, plus what it cannot do: the proxy's CA
        bundle mounted over the image's (the base image's bundle lacks it),
        PIP_CERT/SSL_CERT_FILE for pip and uv, the driver script mounted, and
        8 logical CPUs so that 8 one-CPU actors start at once."""
        ports = {k: _free_port() for k in (
            "port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port",
            "node-manager-port", "object-manager-port")}
        cmd = ["docker", "run", "-d", "--name", name, "--network", "host", "--shm-size=2g",
               "-v", f"{CA_BUNDLE}:{CONTAINER_CA}:ro", "-v", f"{self.driver_dir}:/bench:ro",
               "-e", f"SSL_CERT_FILE={CONTAINER_CA}", "-e", f"PIP_CERT={CONTAINER_CA}",
               "-e", "PIP_DISABLE_PIP_VERSION_CHECK=1",
               "--entrypoint", "/opt/venv/bin/ray", image,
               "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
               "--disable-usage-stats", "--include-dashboard=true", f"--num-cpus={RAY_ACTORS}",
               *(f"--{k}={v}" for k, v in ports.items())]
        capture(cmd)
        return name, f"http://127.0.0.1:{ports['dashboard-port']}"

    def measure(self, run: int, mode: str, image: str, runtime_env: dict[str, Any]) -> RayRow:
        from raybake.tools.ray import wait_for_dashboard

        logfile = LOGS / f"{self.stamp}-r{run}-ray-{mode}.log"
        row = RayRow(run, mode, ok=False, image=image, runtime_env=runtime_env, log=str(logfile.relative_to(REPO)))
        name = f"raybake-bench-head-{uuid.uuid4().hex[:10]}"
        lines: list[str] = []
        try:
            start = time.perf_counter()
            name, address = self.start_head(image, name)

            def alive() -> bool:
                out = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", name],
                                     capture_output=True, text=True).stdout.strip()
                return out == "true"

            wait_for_dashboard(address, timeout=HEAD_START_TIMEOUT, is_alive=alive)
            row.head_start_s = time.perf_counter() - start
            from ray.job_submission import JobSubmissionClient

            client = JobSubmissionClient(address)
            entrypoint = shlex.join(["/opt/venv/bin/python", "/bench/actors.py", json.dumps(runtime_env),
                                     str(RAY_ACTORS)])
            start = time.perf_counter()
            job_id = client.submit_job(entrypoint=entrypoint)
            deadline = start + JOB_TIMEOUT
            status = client.get_job_status(job_id)
            while not status.is_terminal() and time.perf_counter() < deadline:
                time.sleep(0.5)
                status = client.get_job_status(job_id)
            row.job_s = time.perf_counter() - start
            job_log = client.get_job_logs(job_id)
            lines = job_log.splitlines()
            if not status.is_terminal():
                client.stop_job(job_id)
                raise RuntimeError(f"the job did not finish within {JOB_TIMEOUT} s")
            result = next((json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("BENCH_RESULT ")),
                          None)
            if str(status.value) != "SUCCEEDED" or result is None:
                info = client.get_job_info(job_id)
                raise RuntimeError(f"job {status.value}: {_job_error(lines, info.message)}")
            row.ok = True
            row.actors_ready_s = result["actors_ready_s"]
            row.pythons, row.versions = result["pythons"], result["versions"]
        except Exception as exc:  # noqa: BLE001 - a mode that cannot work here is recorded as failed
            row.error = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
            if not lines:
                lines = subprocess.run(["docker", "logs", "--tail", "60", name], capture_output=True,
                                       text=True).stdout.splitlines()
        finally:
            extra = self.runtime_env_logs(name, mode) if not row.ok else ""
            logfile.write_text("\n".join(lines) + ("\n\n--- runtime_env agent logs ---\n" + extra if extra else "\n"))
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, text=True)
        return row

    @staticmethod
    def runtime_env_logs(name: str, mode: str) -> str:
        """The last lines of the head's runtime_env and worker logs, for a failed mode."""
        script = ("cd /tmp/ray/session_latest/logs 2>/dev/null && "
                  "for f in runtime_env_setup-*.log runtime_env_agent.log python-core-worker-*.log "
                  "worker-*.err raylet.out; do [ -f \"$f\" ] && echo \"== $f\" && tail -n 30 \"$f\"; done")
        proc = subprocess.run(["docker", "exec", name, "sh", "-c", script], capture_output=True, text=True)
        return proc.stdout[-20000:]

    def run(self) -> list[RayRow]:
        wait_for_quiet_machine(self.opts.no_wait)
        self.driver_dir.mkdir(parents=True, exist_ok=True)
        (self.driver_dir / "actors.py").write_text(ACTORS_SCRIPT)
        images: dict[str, str | Exception] = {}
        try:
            images["full"] = self.raybake_image(fresh_copy(WORK / "ray-app-ray"), "raybake-bench/ray-app",
                                                LOGS / f"{self.stamp}-ray-app-image.log")
        except Exception as exc:  # noqa: BLE001
            images["full"] = exc
        try:
            images["ray_only"] = self.raybake_image(self.ray_only_project(), "raybake-bench/ray-only",
                                                    LOGS / f"{self.stamp}-ray-only-image.log")
        except Exception as exc:  # noqa: BLE001
            images["ray_only"] = exc
        envs: dict[str, tuple[str, dict[str, Any]]] = {
            "prebuilt": ("full", {}),
            "pip": ("ray_only", {"pip": RAY_PACKAGES}),
            "uv": ("ray_only", {"uv": RAY_PACKAGES}),
            "uv_run": ("ray_only", {"py_executable": "uv run " + " ".join(f"--with {p}" for p in RAY_PACKAGES)
                                    + " python"}),
        }
        for run in range(1, self.opts.runs + 1):
            for mode in RAY_MODES:
                which, runtime_env = envs[mode]
                image = images[which]
                if isinstance(image, Exception):
                    self.rows.append(RayRow(run, mode, ok=False, runtime_env=runtime_env,
                                            error=f"no image: {image}"))
                    continue
                log(f"run {run}, Ray {RAY_MODE_LABELS[mode]} ...")
                row = self.measure(run, mode, image, runtime_env)
                self.rows.append(row)
                if row.ok:
                    log(f"  {RAY_ACTORS} actors ready in {row.actors_ready_s:.1f} s "
                        f"(job {row.job_s:.1f} s, head start {row.head_start_s:.1f} s)")
                else:
                    log(f"  FAILED: {row.error}")
        return self.rows


def _job_error(lines: list[str], message: str | None) -> str:
    for pattern in ("Error", "error", "Traceback"):
        hits = [line.strip() for line in lines if pattern in line]
        if hits:
            return hits[-1][:400]
    return (message or "no output")[:400]


# --------------------------------------------------------------------------- summary

def summarize_builds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per (tool, scenario) and medians of per-run ratios raybake/baseline."""
    runs = sorted({r["run"] for r in rows})
    by = {(r["run"], r["tool"], r["scenario"]): r for r in rows}
    out: dict[str, Any] = {"cells": {}, "ratios": {}}
    for tool in TOOLS:
        for sc in SCENARIOS:
            ok = [by[(n, tool, sc)] for n in runs if (n, tool, sc) in by and by[(n, tool, sc)]["ok"]]
            total = [n for n in runs if (n, tool, sc) in by]
            out["cells"][f"{tool}/{sc}"] = {
                "seconds": median([r["seconds"] for r in ok]),
                "changed_bytes": median([r["changed_bytes"] for r in ok]),
                "image_size": median([r["image_size"] for r in ok]),
                "unpacked_size": median([r["unpacked_size"] for r in ok]),
                "ok_runs": len(ok), "runs": len(total),
                "errors": sorted({by[(n, tool, sc)]["error"] for n in total if not by[(n, tool, sc)]["ok"]}),
            }
    for base in ("pip", "uv"):
        for sc in SCENARIOS:
            pairs = [(by[(n, "raybake", sc)], by[(n, base, sc)]) for n in runs
                     if (n, "raybake", sc) in by and (n, base, sc) in by]
            ratios = [a["seconds"] / b["seconds"] for a, b in pairs if a["ok"] and b["ok"] and b["seconds"]]
            size = [a["image_size"] / b["image_size"] for a, b in pairs if a["ok"] and b["ok"] and b["image_size"]]
            out["ratios"][f"{base}/{sc}"] = {"time": median(ratios), "size": median(size), "pairs": len(ratios)}
    return out


def summarize_ray(rows: list[dict[str, Any]]) -> dict[str, Any]:
    runs = sorted({r["run"] for r in rows})
    by = {(r["run"], r["mode"]): r for r in rows}
    out: dict[str, Any] = {"cells": {}, "ratios": {}}
    for mode in RAY_MODES:
        ok = [by[(n, mode)] for n in runs if (n, mode) in by and by[(n, mode)]["ok"]]
        total = [n for n in runs if (n, mode) in by]
        out["cells"][mode] = {
            "actors_ready_s": median([r["actors_ready_s"] for r in ok]),
            "job_s": median([r["job_s"] for r in ok]),
            "head_start_s": median([r["head_start_s"] for r in ok]),
            "ok_runs": len(ok), "runs": len(total),
            "errors": sorted({by[(n, mode)]["error"] for n in total if not by[(n, mode)]["ok"]}),
            "runtime_env": next((by[(n, mode)]["runtime_env"] for n in total), None),
        }
        if mode != "prebuilt":
            ratios = [by[(n, "prebuilt")]["actors_ready_s"] / by[(n, mode)]["actors_ready_s"] for n in runs
                      if (n, "prebuilt") in by and (n, mode) in by and by[(n, "prebuilt")]["ok"]
                      and by[(n, mode)]["ok"] and by[(n, mode)]["actors_ready_s"]]
            out["ratios"][mode] = {"time": median(ratios), "pairs": len(ratios)}
    return out


def targets(builds: dict[str, Any] | None, ray: dict[str, Any] | None) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []

    def add(name: str, value: float | None, limit: float, shown: str, strict: bool = False) -> None:
        if value is None:
            rows.append({"target": name, "measured": "not measured (failed)", "result": "MISS"})
            return
        ok = value < limit if strict else value <= limit
        rows.append({"target": name, "measured": shown, "result": "PASS" if ok else "MISS"})

    if builds:
        cells, ratios = builds["cells"], builds["ratios"]
        for sc in ("noop", "source"):
            s = cells[f"raybake/{sc}"]["seconds"]
            add(f"raybake {SCENARIO_LABELS[sc]} < 0.5 s", s, 0.5, f"{s:.2f} s" if s is not None else "", strict=True)
        r = ratios["uv/small_dep"]["time"]
        add("raybake small dependency ≤ 1/4 of (b)", r, 0.25, f"{r:.3f} × (b)" if r is not None else "")
        r = ratios["pip/small_dep"]["time"]
        add("raybake small dependency ≤ 1/10 of (a)", r, 0.10, f"{r:.3f} × (a)" if r is not None else "")
        r = ratios["uv/cold"]["time"]
        add("raybake cold ≤ 1.1 × (b)", r, 1.10, f"{r:.2f} × (b)" if r is not None else "")
        r = ratios["pip/cold"]["size"]
        add("raybake image size ≤ (a)", r, 1.0, f"{r:.2f} × (a)" if r is not None else "")
    if ray:
        for mode in RAY_MODES[1:]:
            r = ray["ratios"][mode]["time"]
            add(f"Ray prebuilt faster than {RAY_MODE_LABELS[mode]}", r, 1.0,
                f"{r:.2f} × (prebuilt / mode)" if r is not None else "", strict=True)
    return rows


def fmt_s(v: float | None) -> str:
    return "failed" if v is None else f"{v:.2f}"


def fmt_mb(v: float | None) -> str:
    return "failed" if v is None else f"{v / 1e6:,.0f}"


def fmt_ratio(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [f"# raybake benchmark results\n",
           f"{meta['date']}, {meta['cpus']} CPUs, Docker {meta['docker']}, base image `{meta['base_image']}`, "
           f"workload `examples/ray-app` ({meta['packages']} locked packages). "
           f"Build runs: {results.get('build', {}).get('runs', '–')}, Ray runs: {results.get('ray', {}).get('runs', '–')}; "
           "medians, ratios are raybake / baseline computed per run then the median. "
           f"Command: `{meta['command']}`.\n"]
    b = results.get("build")
    if b:
        s = b["summary"]
        out.append("## Image builds: wall time of the whole command (s)\n")
        out.append("| scenario | raybake | (a) COPY + pip | (b) uv single layer | raybake / (a) | raybake / (b) |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for sc in SCENARIOS:
            c = s["cells"]
            out.append(f"| {SCENARIO_LABELS[sc]} | {fmt_s(c[f'raybake/{sc}']['seconds'])} | "
                       f"{fmt_s(c[f'pip/{sc}']['seconds'])} | {fmt_s(c[f'uv/{sc}']['seconds'])} | "
                       f"{fmt_ratio(s['ratios'][f'pip/{sc}']['time'])} | {fmt_ratio(s['ratios'][f'uv/{sc}']['time'])} |")
        out.append("\n## Layers rebuilt: bytes of layers whose diff ID is new vs the previous image (MB, uncompressed)\n")
        out.append("Cold builds are compared with the base image.\n")
        out.append("| scenario | raybake | (a) COPY + pip | (b) uv single layer |")
        out.append("|---|---:|---:|---:|")
        for sc in SCENARIOS:
            c = s["cells"]
            out.append(f"| {SCENARIO_LABELS[sc]} | {fmt_mb(c[f'raybake/{sc}']['changed_bytes'])} | "
                       f"{fmt_mb(c[f'pip/{sc}']['changed_bytes'])} | {fmt_mb(c[f'uv/{sc}']['changed_bytes'])} |")
        out.append("\n## Final image size after the cold build (MB)\n")
        out.append("`docker image inspect .Size` (this containerd store reports the compressed content) and the "
                   "sum of the layers' unpacked sizes from `docker history`.\n")
        out.append("| | raybake | (a) COPY + pip | (b) uv single layer |")
        out.append("|---|---:|---:|---:|")
        c = s["cells"]
        out.append("| image size | " + " | ".join(fmt_mb(c[f"{t}/cold"]["image_size"]) for t in TOOLS) + " |")
        out.append("| unpacked layers | " + " | ".join(fmt_mb(c[f"{t}/cold"]["unpacked_size"]) for t in TOOLS) + " |")
    r = results.get("ray")
    if r:
        s = r["summary"]
        out.append(f"\n## Ray start-up: {RAY_ACTORS} actors importing pandas and pyarrow (s)\n")
        out.append("Fresh one-node Ray head container per measurement (empty per-node caches). "
                   "`actors ready` is timed inside the job's driver, from the first actor creation to all "
                   "actors answering; `job` is submit to finish, seen from the client.\n")
        out.append("| dependencies | actors ready | job | head start | prebuilt / mode | runtime_env |")
        out.append("|---|---:|---:|---:|---:|---|")
        for mode in RAY_MODES:
            c = s["cells"][mode]
            ratio = "–" if mode == "prebuilt" else fmt_ratio(s["ratios"][mode]["time"])
            env = json.dumps(c["runtime_env"]) if c["runtime_env"] else "none"
            out.append(f"| {RAY_MODE_LABELS[mode]} | {fmt_s(c['actors_ready_s'])} | {fmt_s(c['job_s'])} | "
                       f"{fmt_s(c['head_start_s'])} | {ratio} | `{env}` |")
    if results.get("targets"):
        out.append("\n## Targets\n")
        out.append("| target | measured | result |")
        out.append("|---|---|---|")
        for t in results["targets"]:
            out.append(f"| {t['target']} | {t['measured']} | {t['result']} |")
    failures = []
    if b:
        for key, c in b["summary"]["cells"].items():
            tool, sc = key.split("/")
            for e in c["errors"]:
                failures.append(f"- build {TOOL_LABELS[tool]}, {SCENARIO_LABELS[sc]} "
                                f"({c['runs'] - c['ok_runs']}/{c['runs']} runs): {e}")
        for row in b["rows"]:
            for note in row.get("notes", []):
                failures.append(f"- note, run {row['run']} {TOOL_LABELS[row['tool']]} {row['scenario']}: {note}")
    if r:
        for mode, c in r["summary"]["cells"].items():
            for e in c["errors"]:
                failures.append(f"- Ray {RAY_MODE_LABELS[mode]} ({c['runs'] - c['ok_runs']}/{c['runs']} runs): {e}")
    if r:
        for mode in RAY_MODES:
            if mode in RAY_MODE_NOTES and r["summary"]["cells"][mode]["runs"]:
                failures.append(f"- note, Ray {RAY_MODE_LABELS[mode]}: {RAY_MODE_NOTES[mode]}")
    if failures:
        out.append("\n## Failures and notes\n")
        out.extend(failures)
    return "\n".join(out) + "\n"


def chart(results: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: run through `make bench` (uv run --with matplotlib)"
    panels = []
    if results.get("build"):
        panels += ["time", "bytes"]
    if results.get("ray"):
        panels.append("ray")
    if not panels:
        return "nothing to plot"
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False)
    colors = {"raybake": "#2b8cbe", "pip": "#e34a33", "uv": "#fdbb84"}
    for ax, panel in zip(axes[0], panels):
        if panel in ("time", "bytes"):
            cells = results["build"]["summary"]["cells"]
            key, scale, label = (("seconds", 1, "wall time (s, log scale)") if panel == "time"
                                 else ("changed_bytes", 1e9, "layers rebuilt (GB)"))
            width = 0.27
            for i, tool in enumerate(TOOLS):
                values = [cells[f"{tool}/{sc}"][key] for sc in SCENARIOS]
                xs = [j + (i - 1) * width for j in range(len(SCENARIOS))]
                heights = [(v / scale if v is not None else 0) for v in values]
                if panel == "time":
                    heights = [max(h, 0.01) for h in heights]
                bars = ax.bar(xs, heights, width, label=TOOL_LABELS[tool], color=colors[tool])
                for bar, v in zip(bars, values):
                    text = "fail" if v is None else (f"{v:.1f}" if panel == "time" else f"{v / scale:.2f}")
                    ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                                va="bottom", fontsize=7)
            if panel == "time":
                ax.set_yscale("log")
            ax.set_xticks(range(len(SCENARIOS)))
            ax.set_xticklabels(["cold", "no-op", "source", "small dep", "heavy dep"])
            ax.set_ylabel(label)
            ax.set_title("image builds: " + ("wall time" if panel == "time" else "bytes of new layers"))
            ax.legend(fontsize=8)
        else:
            cells = results["ray"]["summary"]["cells"]
            values = [cells[m]["actors_ready_s"] for m in RAY_MODES]
            bars = ax.bar(range(len(RAY_MODES)), [v or 0 for v in values],
                          color=["#2b8cbe", "#e34a33", "#fdbb84", "#fc8d59"])
            for bar, v in zip(bars, values):
                ax.annotate("failed" if v is None else f"{v:.1f}", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=8)
            ax.set_xticks(range(len(RAY_MODES)))
            ax.set_xticklabels(["prebuilt\nimage", "runtime_env\npip", "runtime_env\nuv", "py_executable\nuv run"])
            ax.set_ylabel("seconds until all actors ready")
            ax.set_title(f"Ray: {RAY_ACTORS} actors importing pandas + pyarrow")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of every measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run of everything (same as --runs 1)")
    parser.add_argument("--only", choices=("build", "ray"), help="run one of the two benchmarks; the other's "
                        "previous results in results.json are kept")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a running pytest to end")
    parser.add_argument("--keep-images", action="store_true", help="keep the images the build benchmark made")
    opts = parser.parse_args()
    if opts.quick:
        opts.runs = 1
    if opts.runs < 1:
        parser.error("--runs must be at least 1")

    facts = engine_facts()
    base = os.environ.get("RAYBAKE_BASE_IMAGE") or facts.get("RAYBAKE_TEST_BASE_IMAGE") or \
        "raybake-test/bookworm-python:3.11"
    if image_id(base) is None:
        sys.exit(f"error: the base image {base} is not in the local store\nfix: bash buildkit/engine-up")
    if not CA_BUNDLE.is_file():
        sys.exit(f"error: the CA bundle {CA_BUNDLE} does not exist\nfix: set SSL_CERT_FILE to the proxy's CA bundle")
    WORK.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    argv = " ".join(sys.argv[1:])
    results: dict[str, Any] = {}
    previous_json = RESULTS / "results.json"
    if opts.only and previous_json.exists():
        try:
            results = json.loads(previous_json.read_text())
        except ValueError:
            results = {}
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(),
        "docker": capture(["docker", "version", "--format", "{{.Server.Version}}"], check=False),
        "base_image": base, "packages": (EXAMPLE / "uv.lock").read_text().count("\n[[package]]"),
        "command": f"uv run --frozen --with matplotlib python benchmarks/run.py {argv}".strip(),
        "machine": platform.machine(),
    }
    started = time.perf_counter()
    if opts.only in (None, "build"):
        rows = [asdict(r) for r in BuildBench(opts, base, stamp).run()]
        results["build"] = {"runs": opts.runs, "date": results["meta"]["date"], "rows": rows,
                            "summary": summarize_builds(rows)}
    if opts.only in (None, "ray"):
        rows = [asdict(r) for r in RayBench(opts, base, stamp).run()]
        results["ray"] = {"runs": opts.runs, "date": results["meta"]["date"], "rows": rows,
                          "summary": summarize_ray(rows)}
    results["meta"]["total_s"] = time.perf_counter() - started
    results["targets"] = targets(results.get("build", {}).get("summary"), results.get("ray", {}).get("summary"))
    previous_json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    text = markdown(results)
    (RESULTS / "results.md").write_text(text)
    problem = chart(results, RESULTS / "results.png")
    print()
    print(text)
    print(f"written: {RESULTS / 'results.md'}, {RESULTS / 'results.json'}"
          + ("" if problem else f", {RESULTS / 'results.png'}") + f"  ({results['meta']['total_s'] / 60:.1f} min)")
    if problem:
        print(f"no chart: {problem}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
