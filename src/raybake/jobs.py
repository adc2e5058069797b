"""Ray job configs and submission: the image is the node image, source goes
through runtime_env.working_dir.

Ray's runtime_env ``image_uri`` accepts only image_uri, config and env_vars,
so it cannot carry working_dir: the image must be the cluster's node image
(Anyscale job ``image_uri``, KubeRay head/worker image). py_executable does not
apply to the job's entrypoint, so the entrypoint names the image's interpreter."""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import stat
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from raybake import kuberay
from raybake.contract import LABEL_PYTHON, VENV_PYTHON
from raybake.errors import (
    EngineError,
    JobConfigError,
    ProjectError,
    RegistryError,
    ToolError,
)
from raybake.files import atomic_writer
from raybake.plan import ImageIdentity, tag_hash
from raybake.planner import identities_for
from raybake.project import Project, load_project
from raybake.reference import Reference
from raybake.spec import stage_config
from raybake.stage import StagedTree, ray_excludes, stage_project
from raybake.tools import docker
from raybake.tools.ray import client_version

SETUP_TIMEOUT_SECONDS = 600  # Ray's default; raised workers time out in registration otherwise
HEAD_START_TIMEOUT = 120
# The URI schemes a Ray node fetches a working_dir package from, and the
# packages it needs in the image to do so (ray/_private/runtime_env/protocol.py, Ray 2.60).
REMOTE_WORKING_DIR_SCHEMES: dict[str, tuple[str, ...]] = {
    "https": ("smart-open",), "http": ("smart-open",),
    "s3": ("boto3", "smart-open"), "gs": ("google-cloud-storage", "smart-open"),
    "azure": ("azure-identity", "azure-storage-blob", "smart-open"), "abfss": ("adlfs", "azure-identity"),
    "file": (),
}
# Ray strips a remote package's single top-level directory; one is always
# there, so a tree that holds only `src/` still unpacks with its `src/`.
WORKING_DIR_ZIP_TOP = "working_dir"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: the same tree gives the same bytes
UPLOAD_FIX = ("zip the staged tree and upload it where the cluster can read it, then name it: "
              "`raybake job-config --format kuberay --entrypoint CMD --working-dir-zip wd.zip "
              "--working-dir-uri s3://BUCKET/APP-VERSION.zip` and `aws s3 cp wd.zip s3://BUCKET/APP-VERSION.zip` "
              "(or gs://, https://...); a new name for new content, since Ray caches a package by its URI")


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


def runtime_env(plan: ImageIdentity, staged: StagedTree, working_dir: str | None = None) -> dict[str, Any]:
    """The job's runtime_env; working_dir is ``working_dir`` (a URI the cluster
    fetches) when given, else the staged tree, which the job client uploads."""
    env_vars = dict(plan.spec.env)
    if staged.python_path:
        # Workers and the entrypoint start in working_dir: relative entries resolve there.
        env_vars["PYTHONPATH"] = ":".join(staged.python_path)
    return {
        "working_dir": working_dir or str(staged.path),
        "env_vars": env_vars,
        "config": {"setup_timeout_seconds": SETUP_TIMEOUT_SECONDS},
    }


def _job_metadata(plan: ImageIdentity, image: str) -> dict[str, str]:
    return {"raybake.image": image, "raybake.spec": plan.spec.name}


def ray_job_config(plan: ImageIdentity, staged: StagedTree, entrypoint: Sequence[str],
                   image: str, working_dir: str | None = None) -> dict[str, Any]:
    """Keyword arguments for JobSubmissionClient.submit_job(**config)."""
    return {
        "entrypoint": entrypoint_command(entrypoint),
        "runtime_env": runtime_env(plan, staged, working_dir),
        "metadata": _job_metadata(plan, image),
    }


def anyscale_job_config(project: Project, plan: ImageIdentity, staged: StagedTree,
                        entrypoint: Sequence[str], image: str, working_dir: str | None = None) -> dict[str, Any]:
    """An Anyscale job YAML document: the image is the cluster's node image."""
    env = runtime_env(plan, staged)
    # Without a URI the Anyscale CLI uploads the project directory, leaving these out.
    source = ({"working_dir": working_dir} if working_dir else
              {"working_dir": ".", "excludes": list(ray_excludes(stage_config(project)))})
    return {
        "name": f"{project.name}-{plan.spec.name}",
        "image_uri": image,
        **source,
        "entrypoint": entrypoint_command(entrypoint),
        "env_vars": env["env_vars"],
    }


def kuberay_job(project: Project, plan: ImageIdentity, staged: StagedTree, entrypoint: Sequence[str],
                image: str, *, ray_version: str | None, working_dir: str) -> dict[str, Any]:
    """A KubeRay RayJob. Its submitter pod runs `ray job submit` inside the
    cluster, where no local path exists: ``working_dir`` is a URI the cluster fetches."""
    return kuberay.ray_job(
        kuberay.resource_name(project.name, plan.spec.name, limit=kuberay.MAX_RAYJOB_NAME),
        kuberay.resource_labels(project.name, plan.spec.name), image, ray_version,
        entrypoint=entrypoint_command(entrypoint), runtime_env=runtime_env(plan, staged, working_dir),
        metadata=_job_metadata(plan, image))


def kuberay_cluster(project: Project, plan: ImageIdentity, image: str, *, ray_version: str | None) -> dict[str, Any]:
    """A KubeRay RayCluster of ``image``. Jobs reach it through its dashboard
    (`raybake submit --address`), whose client uploads the staged working_dir."""
    return kuberay.ray_cluster(
        kuberay.resource_name(project.name, plan.spec.name, limit=kuberay.MAX_RAYCLUSTER_NAME),
        kuberay.resource_labels(project.name, plan.spec.name), image, ray_version)


def check_remote_working_dir(uri: str, locked: Mapping[str, str | None], spec_name: str) -> None:
    """Refuse a working_dir URI the image cannot fetch: a zip, from a scheme Ray
    fetches with packages that must be installed on every node."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme not in REMOTE_WORKING_DIR_SCHEMES or not parsed.path.endswith(".zip"):
        raise JobConfigError(
            f"--working-dir-uri {uri} is not a working_dir package a Ray cluster fetches: a .zip at a "
            f"{', '.join(f'{s}://' for s in REMOTE_WORKING_DIR_SCHEMES)} URI",
            fix=UPLOAD_FIX)
    missing = [p for p in REMOTE_WORKING_DIR_SCHEMES.get(scheme, ()) if p not in locked]
    if missing:
        raise ProjectError(
            f"the image of spec '{spec_name}' cannot fetch the working_dir {uri}: Ray fetches {scheme}:// URIs "
            f"with {' and '.join(missing)}, which the lock does not install there",
            fix=f"add to the project: `uv add {' '.join(missing)}`, and rebuild; or put the zip where "
                "an https:// URL reaches it (ray[default] brings smart-open)")


def write_working_dir_zip(staged: StagedTree, out: Path) -> Path:
    """The staged tree as a zip for a remote working_dir, under one top-level
    directory that Ray strips when it unpacks it. Fixed times, sorted entries."""
    out = Path(os.path.abspath(out))
    with atomic_writer(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel in staged.files:
            source = staged.path / rel
            info = zipfile.ZipInfo(f"{WORKING_DIR_ZIP_TOP}/{rel}", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | stat.S_IMODE(source.stat().st_mode)) << 16
            with source.open("rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst)
    return out


# ---- the job client's Ray and Python against the image's ----

@dataclass(frozen=True)
class Client:
    """The Ray job client in raybake's own environment."""

    ray: str | None  # None: Ray is not installed here
    python: str  # X.Y.Z

    @classmethod
    def here(cls) -> Client:
        return cls(client_version(), platform.python_version())


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _series_allowed(minor: str, requires_python: str) -> bool:
    """Does some X.Y.* satisfy requires-python? (One that cannot be read allows all.)"""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        allowed = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True
    return any(allowed.contains(f"{minor}.{patch}", prereleases=True) for patch in range(40))


def check_client(client: Client, *, image_ray: str | None, image_python: str | None,
                 requires_python: str | None) -> None:
    """Refuse a client whose Ray or Python is known to differ from the image's.

    ``image_python`` is X.Y[.Z] when known (the spec's request, or the image's
    label); without it, only requires-python can show a different Python."""
    if image_ray and client.ray and client.ray != image_ray:
        raise ToolError(
            f"Ray here is {client.ray}, the image has Ray {image_ray}: a job client must run the "
            "cluster's Ray version",
            fix=f"install the image's Ray where raybake runs (`uv pip install 'ray[default]=={image_ray}'`), "
                f"or lock this one in the project (`uv add 'ray[default]=={client.ray}'`) and rebuild")
    here = _minor(client.python)
    if image_python is not None and _minor(image_python) != here:
        wanted = _minor(image_python)
        raise ToolError(
            f"Python here is {client.python}, the image's is {image_python}: a job client must run the "
            "cluster's Python version",
            fix=f"run raybake with Python {wanted} (e.g. `uv tool install --python {wanted} 'raybake[ray]'`), "
                f"or build the image for Python {here} (`python: \"{here}\"` in the spec, or .python-version)")
    if image_python is None and requires_python and not _series_allowed(here, requires_python):
        raise ToolError(
            f"Python here is {client.python}, outside the project's requires-python {requires_python}, "
            "so the image's Python differs: a job client must run the cluster's Python version",
            fix="run raybake with the image's Python (`raybake build` names it), "
                "e.g. `uv tool install --python X.Y 'raybake[ray]'`")


def image_python(plan: ImageIdentity, reference: str) -> str | None:
    """The image's Python as far as it is known without running it: the version
    the spec asks for (or .python-version), else the label of ``reference`` in
    the local image store; None when neither tells."""
    if plan.spec.python:
        return plan.spec.python
    image = docker.local_image(reference)
    # Only raybake's build under that tag tells: its input-hash label starts with the tag's digits.
    if image is None or not (image.input_hash or "").startswith(tag_hash(reference)):
        return None
    return image.labels.get(LABEL_PYTHON)


def locked_packages(project: Project, plan: ImageIdentity) -> dict[str, str | None]:
    """{name: version} of what the spec's image installs, read from the lock."""
    from raybake.planner import spec_requirements
    from raybake.verify import locked_selection

    return locked_selection(spec_requirements(project, plan.spec), None)


def image_ray_version(locked: Mapping[str, str | None], spec_name: str) -> str | None:
    """Ray's locked version (None for a URL or path source); an error when the image would have no Ray."""
    if "ray" not in locked:
        raise ProjectError(
            f"the image of spec '{spec_name}' would have no Ray: ray is not among the locked "
            "dependencies it installs, so no Ray head or job can run in it",
            fix="add Ray to the project (`uv add 'ray[default]'`), or select the group or extra that has it "
                "in the spec (groups:/extras:)")
    return locked["ray"]


# ---- raybake job-config ----


def job_config(project_dir: Path, names: tuple[str, ...], fmt: str, *, entrypoint: Sequence[str],
               stage_dir: Path | None = None, working_dir_uri: str | None = None,
               working_dir_zip: Path | None = None) -> dict[str, Any]:
    """The document `raybake job-config` prints, in format ``fmt``.

    Only the `ray` format is submitted by a client outside the image (a
    JobSubmissionClient, usually this environment's): when Ray is installed
    here, a Ray or Python that differs from the image's is refused. Anyscale
    and KubeRay submit from inside the cluster, with the image's own Ray."""
    from raybake.paths import cache_dir

    if fmt == "kuberay" and not working_dir_uri:
        raise JobConfigError(
            "a RayJob's working_dir must be a URI the cluster fetches: its submitter runs `ray job submit` "
            "inside the cluster, where no local path of this machine exists",
            fix=UPLOAD_FIX)
    project = load_project(project_dir)
    (plan,) = identities_for(project, names)
    locked = locked_packages(project, plan)
    # A KubeRay cluster runs Ray from the image: no Ray there, no manifest.
    ray_version = image_ray_version(locked, plan.spec.name) if fmt.startswith("kuberay") else locked.get("ray")
    if fmt == "ray" and ray_version is not None:  # an image without Ray takes no Ray client
        client = Client.here()
        if client.ray is not None:
            try:
                python = image_python(plan, job_reference(project, plan))
            except EngineError:  # no daemon to ask: the label is a bonus, job-config only writes a file
                python = None
            check_client(client, image_ray=ray_version, image_python=python,
                         requires_python=project.requires_python)
    if working_dir_uri:
        check_remote_working_dir(working_dir_uri, locked, plan.spec.name)
    image = image_for_job(project, plan)
    if fmt == "kuberay-cluster":
        return kuberay_cluster(project, plan, image, ray_version=ray_version)
    staged = stage_project(project, stage_dir or cache_dir() / "stage" / project.name / plan.spec.name)
    if working_dir_zip:
        write_working_dir_zip(staged, working_dir_zip)
    if fmt == "ray":
        return ray_job_config(plan, staged, entrypoint, image, working_dir_uri)
    if fmt == "anyscale":
        return anyscale_job_config(project, plan, staged, entrypoint, image, working_dir_uri)
    return kuberay_job(project, plan, staged, entrypoint, image, ray_version=ray_version,
                       working_dir=working_dir_uri)


def job_reference(project: Project, plan: ImageIdentity) -> str:
    """REPOSITORY:TAG a job config names: the pin when the project has one."""
    from raybake.pin import pinned_reference

    return pinned_reference(project.root, plan.spec.name) or plan.reference


def image_for_job(project: Project, plan: ImageIdentity) -> str:
    """The reference a job config names: the pin when the project has one, by
    digest when the image lives in a registry (a tag can move, a digest cannot)."""
    from raybake.trust import registry_digest_reference

    reference = job_reference(project, plan)
    if Reference.parse(reference).registry:
        # Only the digest of an image whose input-hash label matches: a pin names its tag's 16 digits.
        want = (plan.input_hash.hexdigest if reference == plan.reference
                else tag_hash(reference))
        digest_reference = registry_digest_reference(reference, want, platform=plan.spec.platform)
        if digest_reference is None:
            raise RegistryError(f"{reference} is not in its registry yet",
                                fix="push it with `raybake build --push`")
        return digest_reference
    return reference
