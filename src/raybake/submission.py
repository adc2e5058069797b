"""`raybake submit`: build if needed, stage, run the job on Ray and follow it.

Against a cluster (--address, RAY_ADDRESS) raybake's own Ray is the client and
must match the image's; against the local head it starts in the image, the
image's own Ray client submits (a container of the same image)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from raybake.build import check_lock, ensure_image
from raybake.contract import SUBMIT_SCRIPT, VENV_PYTHON, in_image_source
from raybake.errors import JobFailed, ToolError
from raybake.jobs import (
    Client,
    check_client,
    cluster_image,
    image_python,
    image_ray_version,
    locked_packages,
    on_this_machine,
    pullable_reference,
    ray_job_config,
)
from raybake.localcluster import local_head
from raybake.plan import ImageIdentity
from raybake.planner import identities_for, ray_without_default
from raybake.progress import Reporter, format_size
from raybake.project import load_project
from raybake.stage import StagedTree, stage_project
from raybake.tools import docker
from raybake.tools.ray import connect, install_ray, submit_and_follow
from raybake.verify import verify_or_raise


def submit(project_dir: Path, names: tuple[str, ...], command: Sequence[str], *,
           address: str | None = None, reporter: Reporter | None = None) -> str:
    """Build if needed, stage, submit to ``address`` (or RAY_ADDRESS, or a local
    head inside the image), stream the logs; return the job ID.

    A client (this environment) whose Ray or Python differs from the image's
    is refused: before building when the lock and spec tell, after it when
    only the built image's label does."""
    reporter = reporter or Reporter()
    project = load_project(project_dir)
    (plan,) = identities_for(project, names)
    address = address or os.environ.get("RAY_ADDRESS")
    # Before anything starts: no Ray in the image, or a client that cannot talk to it, no job.
    locked = locked_packages(project, plan)
    image_ray = image_ray_version(locked, plan.spec.name)
    if problem := ray_without_default(project, plan.spec.name, locked):
        raise problem
    # A cluster elsewhere runs the image from a registry: a local name cannot reach it.
    purpose = f"submit --address {address}"
    remote = address is not None and not on_this_machine(address)
    if remote:
        pullable_reference(project, plan, purpose)
    client = Client.here() if address else None
    if client is not None:
        if client.ray is None:
            raise ToolError("Ray is not installed where raybake runs, and submitting to --address needs a Ray "
                            "job client", fix=f"install the image's Ray here: `{install_ray(image_ray)}`")
        check_client(client, image_ray=image_ray, image_python=plan.spec.python,
                     requires_python=project.requires_python)
        connect(address)  # a wrong or silent address fails now, not after a build
    result = ensure_image(project, plan, reporter=reporter, verify=verify_or_raise, lock_checked=check_lock(project))
    reporter.step(f"image {plan.reference}: {result.status}")
    # Run what was checked, by ID or digest: the tag could be moved in between.
    image = result.image_id or result.digest_reference or plan.reference
    if client is not None:
        check_client(client, image_ray=image_ray, image_python=image_python(plan, plan.reference),
                     requires_python=project.requires_python)
    with tempfile.TemporaryDirectory(prefix="raybake-submit-") as tmp:
        staged = stage_project(project, Path(tmp) / "working_dir", plan.spec)
        reporter.step(f"staged {len(staged.files)} files ({format_size(staged.total_bytes)}) for working_dir")
        if address:
            named = cluster_image(project, plan, purpose) if remote else plan.reference
            config = ray_job_config(plan, staged, command, image=named)
            reporter.step(f"submitting `{config['entrypoint']}` to {address}")
            return submit_and_follow(address, on_log=reporter.job_line, head_outlives_job=True, **config)
        with local_head(image, on_step=reporter.step) as local:
            return _submit_in_image(plan, image, staged, command, local.address, reporter)


IN_IMAGE_WORKING_DIR = "/raybake/working_dir"


def _submit_in_image(plan: ImageIdentity, image: str, staged: StagedTree, command: Sequence[str],
                     address: str, reporter: Reporter) -> str:
    """Submit to raybake's own local head with the image's Ray client (a container
    of the same image on the host network): the client's Ray and Python are the
    cluster's by construction, whatever this machine has."""
    config = ray_job_config(plan, staged, command, image=plan.reference)
    config["runtime_env"]["working_dir"] = IN_IMAGE_WORKING_DIR  # the staged tree, mounted there
    reporter.step(f"submitting `{config['entrypoint']}` to {address} with the image's Ray client")
    marker = "@@RAYBAKE-JOB@@"
    outcome: dict[str, str] = {}

    def line(text: str) -> None:
        if text.startswith(marker):
            outcome.update(json.loads(text[len(marker):]))
        else:
            reporter.job_line(text)

    code = docker.run_streaming(
        image,
        [VENV_PYTHON, "-c", in_image_source(SUBMIT_SCRIPT), json.dumps({"address": address, **config})],
        on_line=line, mounts=((staged.path, IN_IMAGE_WORKING_DIR),))
    if not outcome:
        raise ToolError(f"the job could not be submitted to the local Ray head at {address} (exit {code})",
                        fix="read the output above")
    if outcome["status"] != "SUCCEEDED":
        raise JobFailed(f"Ray job {outcome['job_id']} ended {outcome['status']}: {outcome['message']}".strip(),
                        fix="read the job's log above (the local Ray head has been stopped with the job)")
    return outcome["job_id"]
