"""Ray start-up: actors that import pandas and pyarrow, with the dependencies
(1) in the prebuilt raybake image, (2) from runtime_env pip, (3) from
runtime_env uv, (4) from a per-worker `uv run --with ...` py_executable.

One node: 8 actors on a fresh one-node cluster. Many nodes: a head and two
workers (raybake.localcluster), 3 actors pinned to each node by its resource,
with Ray's worker registration timeout lowered so that slow worker start-ups
show. A fresh cluster per measurement means empty per-node caches (Ray's
runtime_resources, pip's and uv's caches): every mode pays a real install."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    CA_BUNDLE,
    CONTAINER_CA,
    LOGS,
    REPO,
    WORK,
    error_summary,
    fresh_copy,
    log,
    raybake_build,
    raybake_env,
    uv_lock,
    wait_for_quiet_machine,
)

from raybake.localcluster import local_cluster
from raybake.tools.run import run as run_command

RAY_MODES = ("prebuilt", "pip", "uv", "uv_run")
NODE_MODES = ("prebuilt", "uv", "uv_run")  # the multi-node comparison the issue asks for
RAY_MODE_LABELS = {"prebuilt": "(1) prebuilt raybake image", "pip": "(2) runtime_env pip",
                   "uv": "(3) runtime_env uv", "uv_run": "(4) py_executable `uv run --with`"}
RAY_MODE_NOTES = {
    "uv_run": "works because the image's VIRTUAL_ENV makes `uv run --with` layer pandas/pyarrow "
              "over /opt/venv (where ray is); the workers of a node share uv's cache lock, one installs.",
}
RAY_ACTORS = 8
WORKER_NODES = 2
ACTORS_PER_NODE = 3
REGISTER_TIMEOUT_S = 10  # Ray's default is 60 s; lowered so that slow worker start-ups show on 2 cores
RAY_PACKAGES = ["pandas", "pyarrow"]
JOB_TIMEOUT = 1500
NODES_JOB_TIMEOUT = 600
REGISTER_TIMEOUT_MESSAGE = "have not registered within the timeout"

ACTORS_SCRIPT = '''\
"""Actors that import pandas and pyarrow, PER_NODE on every node (by its node_<i>
resource) or N on the cluster; prints the time until all are ready."""
import json
import sys
import time

import ray

runtime_env = json.loads(sys.argv[1])
count, per_node = int(sys.argv[2]), sys.argv[3] == "per-node"
ray.init()


@ray.remote(num_cpus=0)
class Worker:
    def __init__(self):
        import pandas
        import pyarrow

        self.info = {"python": sys.executable, "node": ray.get_runtime_context().get_node_id(),
                     "pandas": pandas.__version__, "pyarrow": pyarrow.__version__}

    def ready(self):
        return self.info


options = {"runtime_env": runtime_env} if runtime_env else {}
if per_node:
    names = sorted({k for n in ray.nodes() if n["Alive"] for k in n["Resources"] if k.startswith("node_")})
    placements = [{"resources": {name: 1}} for name in names for _ in range(count)]
else:
    placements = [{"num_cpus": 1} for _ in range(count)]
t0 = time.perf_counter()
actors = [Worker.options(**options, **p).remote() for p in placements]
infos = ray.get([a.ready.remote() for a in actors], timeout=1200)
elapsed = time.perf_counter() - t0
print("BENCH_RESULT " + json.dumps({
    "actors_ready_s": elapsed, "actors": len(infos), "nodes": len({i["node"] for i in infos}),
    "pythons": sorted({i["python"] for i in infos}),
    "versions": sorted({f"pandas {i['pandas']}, pyarrow {i['pyarrow']}" for i in infos}),
}), flush=True)
'''


@dataclass
class RayRow:
    run: int
    mode: str
    ok: bool
    nodes: int = 1
    image: str | None = None
    runtime_env: dict[str, Any] | None = None
    actors: int | None = None
    actors_ready_s: float | None = None
    job_s: float | None = None
    head_start_s: float | None = None  # the whole cluster's start, for several nodes
    register_timeouts: int | None = None  # workers Ray gave up waiting for
    pythons: list[str] | None = None
    versions: list[str] | None = None
    error: str | None = None
    log: str | None = None


def runtime_env_of(mode: str) -> dict[str, Any]:
    return {"prebuilt": {}, "pip": {"pip": RAY_PACKAGES}, "uv": {"uv": RAY_PACKAGES},
            "uv_run": {"py_executable": "uv run " + " ".join(f"--with {p}" for p in RAY_PACKAGES) + " python"}}[mode]


def _job_error(lines: list[str], message: str | None) -> str:
    for pattern in ("Error", "error", "Traceback"):
        hits = [line.strip() for line in lines if pattern in line]
        if hits:
            return hits[-1][:400]
    return (message or "no output")[:400]


def node_logs(container: str, pattern: str | None = None, tail: int = 30) -> str:
    """From a node's Ray logs: the lines matching ``pattern`` (raylet.out), or the
    last lines of the runtime_env and worker logs."""
    if pattern:
        script = f"grep -h {shlex.quote(pattern)} /tmp/ray/session_latest/logs/raylet.out 2>/dev/null || true"
    else:
        script = ("cd /tmp/ray/session_latest/logs 2>/dev/null && "
                  "for f in runtime_env_setup-*.log runtime_env_agent.log python-core-worker-*.log "
                  f"worker-*.err raylet.out; do [ -f \"$f\" ] && echo \"== $f\" && tail -n {tail} \"$f\"; done")
    return run_command(["docker", "exec", container, "sh", "-c", script], check=False, timeout=60).stdout[-20000:]


class RayBench:
    def __init__(self, opts: argparse.Namespace, base_image: str, stamp: str, *, nodes: bool):
        self.opts = opts
        self.base = base_image
        self.stamp = stamp
        self.workers = WORKER_NODES if nodes else 0
        self.modes = NODE_MODES if nodes else RAY_MODES
        self.rows: list[RayRow] = []
        self.driver_dir = WORK / "ray-driver"

    def raybake_image(self, project: Path, repository: str, logfile: Path) -> str:
        """Build (when absent) the raybake image of ``project``; not timed."""
        code, seconds, ref = raybake_build(project, raybake_env(self.base, repository), logfile)
        if code != 0 or ref is None:
            raise RuntimeError(f"raybake build of {project.name} failed: {error_summary(logfile)}")
        log(f"image {ref} ready ({seconds:.0f} s)")
        return ref

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

    def cluster_env(self) -> dict[str, str]:
        """What every node gets: the proxy's CA for pip and uv (the base image's bundle
        lacks it; Ray's pip and uv plugins install in the runtime_env agent, which
        inherits the node's environment), and for several nodes the lowered timeout."""
        env = {"SSL_CERT_FILE": CONTAINER_CA, "PIP_CERT": CONTAINER_CA, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        if self.workers:
            env["RAY_worker_register_timeout_seconds"] = str(REGISTER_TIMEOUT_S)
        return env

    def measure(self, run: int, mode: str, image: str) -> RayRow:
        from ray.job_submission import JobSubmissionClient

        runtime_env = runtime_env_of(mode)
        prefix = "nodes" if self.workers else "ray"
        logfile = LOGS / f"{self.stamp}-r{run}-{prefix}-{mode}.log"
        row = RayRow(run, mode, ok=False, nodes=self.workers + 1, image=image, runtime_env=runtime_env,
                     log=str(logfile.relative_to(REPO)))
        lines: list[str] = []
        extra = ""
        count, placement = (ACTORS_PER_NODE, "per-node") if self.workers else (RAY_ACTORS, "per-cluster")
        try:
            start = time.perf_counter()
            with local_cluster(image, workers=self.workers, cpus_per_node=2 if self.workers else RAY_ACTORS,
                               env=self.cluster_env(), mounts=((CA_BUNDLE, CONTAINER_CA),
                                                               (self.driver_dir, "/bench"))) as cluster:
                row.head_start_s = time.perf_counter() - start
                try:
                    client = JobSubmissionClient(cluster.address)
                    entrypoint = shlex.join(["/opt/venv/bin/python", "/bench/actors.py", json.dumps(runtime_env),
                                             str(count), placement])
                    start = time.perf_counter()
                    job_id = client.submit_job(entrypoint=entrypoint)
                    timeout = NODES_JOB_TIMEOUT if self.workers else JOB_TIMEOUT
                    status = client.get_job_status(job_id)
                    while not status.is_terminal() and time.perf_counter() < start + timeout:
                        time.sleep(0.5)
                        status = client.get_job_status(job_id)
                    row.job_s = time.perf_counter() - start
                    lines = client.get_job_logs(job_id).splitlines()
                    if not status.is_terminal():
                        client.stop_job(job_id)
                        raise RuntimeError(f"the job did not finish within {timeout} s")
                    result = next((json.loads(line.split(" ", 1)[1]) for line in lines
                                   if line.startswith("BENCH_RESULT ")), None)
                    if str(status.value) != "SUCCEEDED" or result is None:
                        raise RuntimeError(f"job {status.value}: "
                                           f"{_job_error(lines, client.get_job_info(job_id).message)}")
                    row.ok = True
                    row.actors, row.actors_ready_s = result["actors"], result["actors_ready_s"]
                    row.pythons, row.versions = result["pythons"], result["versions"]
                finally:
                    row.register_timeouts = sum(node_logs(c, REGISTER_TIMEOUT_MESSAGE).count(REGISTER_TIMEOUT_MESSAGE)
                                                for c in cluster.containers)
                    if not row.ok:
                        extra = "\n".join(f"--- node {i} ---\n{node_logs(c)}" for i, c in enumerate(cluster.containers))
        except Exception as exc:  # noqa: BLE001 - a mode that cannot work here is recorded as failed
            row.error = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
        finally:
            logfile.write_text("\n".join(lines) + ("\n\n--- Ray logs of the nodes ---\n" + extra if extra else "\n"))
        return row

    def run(self) -> list[RayRow]:
        wait_for_quiet_machine(self.opts.no_wait)
        self.driver_dir.mkdir(parents=True, exist_ok=True)
        (self.driver_dir / "actors.py").write_text(ACTORS_SCRIPT)
        images: dict[str, str | Exception] = {}
        for which, make in (("full", lambda: self.raybake_image(fresh_copy(WORK / "ray-app-ray"), "raybake-bench-ray-app",
                                                                  LOGS / f"{self.stamp}-ray-app-image.log")),
                            ("ray_only", lambda: self.raybake_image(self.ray_only_project(), "raybake-bench-ray-only",
                                                                      LOGS / f"{self.stamp}-ray-only-image.log"))):
            try:
                images[which] = make()
            except Exception as exc:  # noqa: BLE001
                images[which] = exc
        what = f"{self.workers + 1} nodes" if self.workers else "one node"
        for run in range(1, self.opts.runs + 1):
            for mode in self.modes:
                image = images["full" if mode == "prebuilt" else "ray_only"]
                if isinstance(image, Exception):
                    self.rows.append(RayRow(run, mode, ok=False, nodes=self.workers + 1,
                                            runtime_env=runtime_env_of(mode), error=f"no image: {image}"))
                    continue
                log(f"run {run}, Ray on {what}, {RAY_MODE_LABELS[mode]} ...")
                row = self.measure(run, mode, image)
                self.rows.append(row)
                timeouts = f", {row.register_timeouts} registration timeouts" if self.workers else ""
                if row.ok:
                    log(f"  {row.actors} actors ready in {row.actors_ready_s:.1f} s (job {row.job_s:.1f} s, "
                        f"cluster start {row.head_start_s:.1f} s{timeouts})")
                else:
                    log(f"  FAILED: {row.error}{timeouts}")
        return self.rows
