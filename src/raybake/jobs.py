"""Ray job configs and submission: the image is the node image, source goes
through runtime_env.working_dir.

Ray's runtime_env ``image_uri`` accepts only image_uri, config and env_vars,
so it cannot carry working_dir: the image must be the cluster's node image
(Anyscale job ``image_uri``, KubeRay head/worker image). py_executable does not
apply to the job's entrypoint, so the entrypoint names the image's interpreter."""

from __future__ import annotations

import os
import shlex
import socket
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raybake.build import Reporter, build_plan, check_lock
from raybake.contract import VENV_BIN, VENV_PYTHON
from raybake.planner import identities_for
from raybake.errors import ProjectError, RegistryError, ToolError
from raybake.plan import ImageIdentity
from raybake.project import Project, load_project
from raybake.stage import DEFAULT_EXCLUDES, SECRET_EXCLUDES, StagedTree, stage_project
from raybake.tools import docker
from raybake.tools.ray import client_version, submit_and_follow, wait_for_dashboard
from raybake.verify import verify_or_raise

SETUP_TIMEOUT_SECONDS = 600  # Ray's default; raised workers time out in registration otherwise
HEAD_START_TIMEOUT = 120


def entrypoint_command(args: Sequence[str]) -> str:
    """The job's entrypoint with the image's interpreter named explicitly.

    `python`/`python3` become /opt/venv/bin/python; a bare `foo.py` runs with it."""
    if not args:
        raise ValueError("empty entrypoint")
    first, rest = args[0], list(args[1:])
    if first in ("python", "python3") or first.startswith("python3."):
        first = VENV_PYTHON
    elif first.endswith(".py"):
        rest = [first, *rest]
        first = VENV_PYTHON
    return shlex.join([first, *rest])


def runtime_env(plan: ImageIdentity, staged: StagedTree) -> dict[str, Any]:
    env_vars = dict(plan.spec.env)
    if staged.python_path:
        # Workers and the entrypoint start in working_dir: relative entries resolve there.
        env_vars["PYTHONPATH"] = ":".join(staged.python_path)
    return {
        "working_dir": str(staged.path),
        "env_vars": env_vars,
        "config": {"setup_timeout_seconds": SETUP_TIMEOUT_SECONDS},
    }


def ray_job_config(plan: ImageIdentity, staged: StagedTree, entrypoint: Sequence[str],
                   image: str) -> dict[str, Any]:
    """Keyword arguments for JobSubmissionClient.submit_job(**config)."""
    return {
        "entrypoint": entrypoint_command(entrypoint),
        "runtime_env": runtime_env(plan, staged),
        "metadata": {"raybake.image": image, "raybake.spec": plan.spec.name},
    }


def anyscale_job_config(project: Project, plan: ImageIdentity, staged: StagedTree,
                        entrypoint: Sequence[str], image: str) -> dict[str, Any]:
    """An Anyscale job YAML document: the image is the cluster's node image."""
    env = runtime_env(plan, staged)
    return {
        "name": f"{project.name}-{plan.spec.name}",
        "image_uri": image,
        "working_dir": ".",
        "excludes": sorted({*DEFAULT_EXCLUDES, *SECRET_EXCLUDES}),
        "entrypoint": entrypoint_command(entrypoint),
        "env_vars": env["env_vars"],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LocalHead:
    container_id: str
    address: str  # the dashboard's http address


@contextmanager
def local_head(image: str, *, on_step=lambda message: None) -> Iterator[LocalHead]:
    """A one-node Ray cluster inside ``image`` on loopback, removed afterwards.

    Host networking (no bridge on these daemons) and free ports, so that it
    collides with nothing; every port Ray opens is chosen, none left at its default."""
    ports = {name: _free_port() for name in (
        "port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port",
        "node-manager-port", "object-manager-port")}
    command = [f"{VENV_BIN}/ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               "--dashboard-host=127.0.0.1", "--disable-usage-stats", "--include-dashboard=true",
               *(f"--{k}={v}" for k, v in ports.items())]
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    on_step(f"starting a local Ray head in {image} ({address})")
    container = docker.run_detached(image, command, name=f"raybake-head-{uuid.uuid4().hex[:10]}")
    try:
        try:
            wait_for_dashboard(address, timeout=HEAD_START_TIMEOUT,
                               is_alive=lambda: docker.container_running(container))
        except ToolError as exc:
            raise ToolError(f"{exc.message}\nthe head's last log lines:\n{docker.container_logs(container)}",
                            fix="check that the image has ray[default] and that these ports are free") from None
        yield LocalHead(container, address)
    finally:
        on_step("stopping the local Ray head")
        docker.remove_container(container)


def image_for_job(project: Project, plan: ImageIdentity) -> str:
    """The reference a job config names: the pin when the project has one, by
    digest when the image lives in a registry (a tag can move, a digest cannot)."""
    from raybake.build import is_registry_repository
    from raybake.pin import pinned_reference

    reference = pinned_reference(project.root, plan.spec.name) or plan.reference
    if is_registry_repository(plan.spec.repository):
        digest = docker.registry_digest(reference)
        if digest is None:
            raise RegistryError(f"{reference} is not in its registry yet",
                                fix="push it with `raybake build --push`")
        return f"{reference.rsplit(':', 1)[0]}@{digest}"
    return reference


def submit(project_dir: Path, names: tuple[str, ...], command: Sequence[str], *,
           address: str | None = None, reporter: Reporter | None = None) -> str:
    """Build if needed, stage, submit to ``address`` (or RAY_ADDRESS, or a local
    head inside the image), stream the logs; return the job ID."""
    reporter = reporter or Reporter()
    project = load_project(project_dir)
    (plan,) = identities_for(project, names)
    image_ray = _image_ray_version(project, plan)  # before anything starts: no Ray, no job
    result = build_plan(project, plan, reporter=reporter, verify=verify_or_raise, lock_checked=check_lock(project))
    reporter.step(f"image {plan.reference}: {result.status}")
    client = client_version()
    if client and image_ray and client != image_ray:
        reporter.step(f"warning: Ray here is {client}, the image has {image_ray}; "
                      "keep them equal for job submission")
    address = address or os.environ.get("RAY_ADDRESS")
    with tempfile.TemporaryDirectory(prefix="raybake-submit-") as tmp:
        staged = stage_project(project, Path(tmp) / "working_dir")
        reporter.step(f"staged {len(staged.files)} files ({staged.total_bytes / 1e6:.1f} MB) for working_dir")
        head = nullcontext(None) if address else local_head(plan.reference, on_step=reporter.step)
        with head as local:
            target = address or local.address
            config = ray_job_config(plan, staged, command, image=plan.reference)
            reporter.step(f"submitting `{config['entrypoint']}` to {target}")
            return submit_and_follow(target, on_log=reporter.job_line, head_outlives_job=bool(address), **config)


def _image_ray_version(project: Project, plan: ImageIdentity) -> str | None:
    """Ray's version in the spec's selection; an error when the image would have no Ray."""
    from raybake.planner import spec_requirements
    from raybake.verify import locked_selection

    selected = locked_selection(spec_requirements(project, plan.spec), None)
    if "ray" not in selected:
        raise ProjectError(
            f"the image of spec '{plan.spec.name}' would have no Ray: ray is not among the locked "
            "dependencies it installs, so no Ray head or job can run in it",
            fix="add Ray to the project (`uv add 'ray[default]'`), or select the group or extra that has it "
                "in the spec (groups:/extras:)")
    return selected["ray"]
