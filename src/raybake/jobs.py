"""Ray job configs and submission: the image is the node image, source goes
through runtime_env.working_dir.

Ray's runtime_env ``image_uri`` accepts only image_uri, config and env_vars,
so it cannot carry working_dir: the image must be the cluster's node image
(Anyscale job ``image_uri``, KubeRay head/worker image). py_executable does not
apply to the job's entrypoint, so the entrypoint names the image's interpreter."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import stat
import tempfile
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
from raybake.files import atomic_writer, not_a_regular_file
from raybake.plan import ImageIdentity, tag_hash
from raybake.planner import identities_for, ray_without_default
from raybake.project import Project, load_project
from raybake.reference import Reference
from raybake.spec import AnyscaleOptions, stage_config
from raybake.stage import StagedTree, stage_project
from raybake.tools import docker, storage
from raybake.tools.ray import client_version, install_ray

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
              "(or gs://, https://...); a new name for new content, since Ray caches a package by its URI; "
              "or let raybake do both: `--upload s3://BUCKET/PREFIX` (or `upload = \"...\"` in [tool.raybake])")
# Ray Serve's import path, as `serve run` and serveConfigV2 take it.
SERVE_IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


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


def anyscale_job_config(project: Project, plan: ImageIdentity, staged: StagedTree, entrypoint: Sequence[str],
                        image: str, working_dir: str | None = None,
                        options: AnyscaleOptions | None = None) -> dict[str, Any]:
    """An Anyscale job YAML document (anyscale.job.models.JobConfig): the image is
    the cluster's node image. working_dir is ``working_dir`` (a URI) or the
    staged tree, which `anyscale job submit` uploads: never the project
    directory, whose credentials `raybake stage` keeps out by content too."""
    env = runtime_env(plan, staged, working_dir)
    options = options or plan.spec.anyscale
    return {
        "name": f"{project.name}-{plan.spec.name}",
        "image_uri": image,
        **({"registry_login_secret": options.registry_login_secret} if options.registry_login_secret else {}),
        **({"compute_config": options.compute_config} if options.compute_config else {}),
        **({"cloud": options.cloud} if options.cloud else {}),
        "working_dir": env["working_dir"],
        "entrypoint": entrypoint_command(entrypoint),
        "env_vars": env["env_vars"],
        **({"max_retries": options.max_retries} if options.max_retries is not None else {}),
    }


def kuberay_job(project: Project, plan: ImageIdentity, staged: StagedTree, entrypoint: Sequence[str],
                image: str, *, ray_version: str | None, working_dir: str,
                pods: kuberay.PodOptions = kuberay.PodOptions()) -> dict[str, Any]:
    """A KubeRay RayJob. Its submitter pod runs `ray job submit` inside the
    cluster, where no local path exists: ``working_dir`` is a URI the cluster fetches."""
    return kuberay.ray_job(
        kuberay.resource_name(project.name, plan.spec.name, limit=kuberay.MAX_RAYJOB_NAME),
        kuberay.resource_labels(project.name, plan.spec.name), image, ray_version,
        entrypoint=entrypoint_command(entrypoint), runtime_env=runtime_env(plan, staged, working_dir),
        metadata=_job_metadata(plan, image), pods=pods)


def kuberay_cluster(project: Project, plan: ImageIdentity, image: str, *, ray_version: str | None,
                    pods: kuberay.PodOptions = kuberay.PodOptions()) -> dict[str, Any]:
    """A KubeRay RayCluster of ``image``. Jobs reach it through its dashboard
    (`raybake submit --address`), whose client uploads the staged working_dir."""
    return kuberay.ray_cluster(
        kuberay.resource_name(project.name, plan.spec.name, limit=kuberay.MAX_RAYCLUSTER_NAME),
        kuberay.resource_labels(project.name, plan.spec.name), image, ray_version, pods)


def kuberay_service(project: Project, plan: ImageIdentity, staged: StagedTree, import_path: str, image: str, *,
                    ray_version: str | None, working_dir: str,
                    pods: kuberay.PodOptions = kuberay.PodOptions()) -> dict[str, Any]:
    """A KubeRay RayService serving ``import_path`` (MODULE:APP) from the
    working_dir URI the cluster fetches, on a cluster of ``image``."""
    return kuberay.ray_service(
        kuberay.resource_name(project.name, plan.spec.name, limit=kuberay.MAX_RAYCLUSTER_NAME),
        kuberay.resource_labels(project.name, plan.spec.name), image, ray_version,
        application=project.name, import_path=import_path,
        runtime_env=runtime_env(plan, staged, working_dir), pods=pods)


def kuberay_prepull(project: Project, images: Sequence[tuple[str, str]],
                    pods: kuberay.PodOptions = kuberay.PodOptions()) -> dict[str, Any]:
    """A DaemonSet that pulls the images ((spec, image) pairs) onto every node ahead of the Ray pods."""
    return kuberay.prepull_daemon_set(
        kuberay.resource_name(project.name, "prepull", limit=kuberay.MAX_RAYCLUSTER_NAME),
        {"app.kubernetes.io/name": kuberay.resource_labels(project.name, "")["app.kubernetes.io/name"]},
        images, pods)


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


@dataclass(frozen=True)
class UploadedPackage:
    uri: str
    uploaded: bool  # False: an object of that name, so of that content, was there already


def upload_prefix(prefix: str) -> str:
    """``prefix`` without a trailing '/', or an error when raybake cannot upload there."""
    parsed = urlparse(prefix)
    where = {"s3": parsed.netloc, "gs": parsed.netloc, "file": parsed.path.startswith("/") and not parsed.netloc}
    if parsed.scheme not in storage.SCHEMES or not where[parsed.scheme] or parsed.query or parsed.fragment:
        raise JobConfigError(
            f"--upload {prefix} is not a place raybake uploads to: s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX] "
            "or file:///SHARED/DIR (a directory every Ray node mounts at the same path)",
            fix="name a bucket (and a prefix) or a shared directory, e.g. `--upload s3://my-bucket/ray-apps`")
    return prefix.rstrip("/")


def upload_working_dir(project: Project, staged: StagedTree, prefix: str) -> UploadedPackage:
    """Zip the staged tree and store it as PREFIX/<project>-<content hash>.zip:
    the same tree gives the same bytes, so the same name, and an object already
    there is not uploaded again. Ray caches a package by its URI, so new content
    must have a new name, which this gives."""
    base = upload_prefix(prefix)
    with tempfile.TemporaryDirectory(prefix="raybake-upload-") as tmp:
        package = write_working_dir_zip(staged, Path(tmp) / "working_dir.zip")
        with package.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        uri = f"{base}/{project.name}-{digest[:16]}.zip"
        return UploadedPackage(uri, storage.put_if_absent(uri, package))


def write_working_dir_zip(staged: StagedTree, out: Path) -> Path:
    """The staged tree as a zip for a remote working_dir, under one top-level
    directory that Ray strips when it unpacks it. Fixed times, sorted entries."""
    out = Path(os.path.abspath(out))
    if kind := not_a_regular_file(out):
        raise JobConfigError(f"--working-dir-zip {out} exists and is {kind}, not a file raybake wrote; "
                             "refusing to replace it",
                             fix="pass --working-dir-zip with another path, or remove that one")
    # Zip entry names are UTF-8 (Ray unpacks them so): a name that is not cannot travel.
    if unnamed := [rel for rel in staged.files if not _utf8(rel)]:
        raise JobConfigError(f"{os.fsencode(unnamed[0])!r} (in the staged working_dir) has a file name that is not "
                             "UTF-8, which a working_dir zip cannot hold",
                             fix="rename the file to a UTF-8 name, or leave it out (.rayignore or stage_exclude in "
                                 "[tool.raybake])")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
            for rel in staged.files:
                source = staged.path / rel
                info = zipfile.ZipInfo(f"{WORKING_DIR_ZIP_TOP}/{rel}", date_time=ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | stat.S_IMODE(source.stat().st_mode)) << 16
                with source.open("rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst)
    except OSError as exc:
        raise JobConfigError(f"cannot write --working-dir-zip {out}: {exc.strerror or exc}",
                             fix="pass --working-dir-zip with a path in a directory you can write") from None
    return out


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode keeps undecodable bytes as lone surrogates
        return False
    return True


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
            fix=f"install the image's Ray where raybake runs (`{install_ray(image_ray)}`), "
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
               working_dir_zip: Path | None = None, upload: str | None = None,
               serve_import_path: str | None = None,
               pods: kuberay.PodOptions = kuberay.PodOptions(),
               anyscale: Mapping[str, str | int | None] | None = None,
               check_image: bool = True) -> dict[str, Any]:
    """The document `raybake job-config` prints, in format ``fmt``; ``anyscale``:
    the Anyscale options given as flags, over the spec's; ``check_image``: the
    anyscale format runs the image to check it against Anyscale's image requirements.

    Every format needs Ray in the image. Only the `ray` format is submitted by
    a client outside the image (a JobSubmissionClient, perhaps elsewhere):
    when Ray is installed here, a Ray or Python that differs from the image's
    is a warning, since job-config only writes a file (`submit --address`
    refuses it). Anyscale and KubeRay submit from inside the cluster, with the
    image's own Ray. ``upload`` (else [tool.raybake] upload, unless
    ``working_dir_uri`` is given) uploads the staged tree and makes its URI the working_dir."""
    from raybake.paths import cache_dir

    if fmt == "kuberay-service" and not SERVE_IMPORT_PATH.fullmatch(serve_import_path or ""):
        raise JobConfigError(f"--serve-import-path {serve_import_path!r} is not MODULE:APP",
                             fix="name the module and the Serve application in it, e.g. "
                                 "`--serve-import-path serve_app:app` (what `serve run` takes)")
    project = load_project(project_dir)
    if fmt == "kuberay-prepull":  # every spec's image unless some are named
        return kuberay_prepull(project, [(plan.spec.name, cluster_image(project, plan, f"--format {fmt}"))
                                         for plan in identities_for(project, names, all_specs=not names)], pods)
    has_job = fmt != "kuberay-cluster"
    upload = upload or (stage_config(project).upload if has_job and not working_dir_uri else None)
    if fmt in ("kuberay", "kuberay-service") and not (working_dir_uri or upload):
        raise JobConfigError(
            f"a {'RayJob' if fmt == 'kuberay' else 'RayService'}'s working_dir must be a URI the cluster fetches: "
            "it is submitted inside the cluster, where no local path of this machine exists",
            fix=UPLOAD_FIX)
    (plan,) = identities_for(project, names)
    _warn_if_pin_is_stale(project, plan)
    locked = locked_packages(project, plan)
    # Every format runs Ray from the image: no Ray there, no config.
    ray_version = image_ray_version(locked, plan.spec.name)
    if fmt == "ray":
        _warn_if_client_differs(project, plan, ray_version)
    if fmt == "anyscale":
        _warn_of_missing_anyscale_packages(locked, plan.spec.name)
    # Their clusters start a head in the image: one without Ray's default extra dies there.
    if fmt != "ray" and (problem := ray_without_default(project, plan.spec.name, locked)):
        raise problem
    if upload:  # before anything is uploaded: the image must be able to fetch from there
        check_remote_working_dir(f"{upload_prefix(upload)}/{project.name}.zip", locked, plan.spec.name)
    if working_dir_uri:
        check_remote_working_dir(working_dir_uri, locked, plan.spec.name)
    image = image_for_job(project, plan) if fmt == "ray" else cluster_image(project, plan, f"--format {fmt}")
    if fmt == "anyscale" and check_image:
        check_anyscale_image(image, plan.spec.name)
    if fmt == "kuberay-cluster":
        return kuberay_cluster(project, plan, image, ray_version=ray_version, pods=pods)
    staged = stage_project(project, stage_dir or cache_dir() / "stage" / project.name / plan.spec.name, plan.spec)
    if working_dir_zip:
        write_working_dir_zip(staged, working_dir_zip)
    if upload:
        working_dir_uri = upload_working_dir(project, staged, upload).uri
    if fmt == "ray":
        return ray_job_config(plan, staged, entrypoint, image, working_dir_uri)
    if fmt == "anyscale":
        return anyscale_job_config(project, plan, staged, entrypoint, image, working_dir_uri,
                                   plan.spec.anyscale.merged(**(anyscale or {})))
    if fmt == "kuberay-service":
        return kuberay_service(project, plan, staged, serve_import_path or "", image, ray_version=ray_version,
                               working_dir=working_dir_uri, pods=pods)
    return kuberay_job(project, plan, staged, entrypoint, image, ray_version=ray_version,
                       working_dir=working_dir_uri, pods=pods)


def _warn_of_missing_anyscale_packages(locked: Mapping[str, str | None], spec_name: str) -> None:
    from raybake.anyscale_image import missing_python_packages

    if missing := missing_python_packages(locked):
        logging.getLogger("raybake.jobs").warning(
            "the image of spec '%s' lacks Python packages Anyscale's image requirements list: %s; add them "
            "(`uv add %s`) and rebuild, on `base: anyscale` for the system requirements",
            spec_name, ", ".join(missing), " ".join(f"'{m}'" if ">" in m else m for m in missing))


def check_anyscale_image(reference: str, spec_name: str) -> None:
    """Refuse an image that misses what Anyscale's image requirements ask for
    (user `ray`, its sudo, HOME and WORKDIR, the system packages), found by a
    probe run in it as root; warn of what a job may do without. The image is
    the local store's when it has it, else pulled."""
    from raybake import anyscale_image
    from raybake.contract import ANYSCALE_PROBE_SCRIPT, in_image_source

    local = docker.local_image(reference) or docker.local_image(docker.pull(reference))
    if local is None:
        raise EngineError(f"{reference} is not in the local image store after pulling it",
                          fix=f"`docker pull {reference}`, then run this again")
    args = {"user": anyscale_image.USER, "dir": anyscale_image.HOME, "commands": list(anyscale_image.COMMANDS)}
    # The dynamic loader's variables are emptied for the probe: they would load code into it.
    code, out, err = docker.run_container(
        local.image_id, [VENV_PYTHON, "-I", "-S", "-c", in_image_source(ANYSCALE_PROBE_SCRIPT), json.dumps(args)],
        user="0:0", env={"LD_PRELOAD": "", "LD_AUDIT": ""})
    probe = anyscale_image.parse_probe(out)
    if probe is None:
        raise JobConfigError(
            f"cannot check {reference} against Anyscale's image requirements: {VENV_PYTHON} failed in it "
            f"(exit {code}):\n{(err or out).strip()[-1500:]}",
            fix="run job-config where Docker runs this image (its platform, or QEMU's emulation of it), "
                "or leave the check out: `--no-image-check`")
    judgement = anyscale_image.judge(anyscale_image.ImageFacts(local.workdir, local.env, local.architecture, probe))
    if not judgement.ok:
        message, fix = anyscale_image.refusal(spec_name, reference, judgement)
        raise JobConfigError(message, fix=fix)
    if warning := anyscale_image.warning(spec_name, judgement):
        logging.getLogger("raybake.jobs").warning("%s", warning)


def _warn_if_client_differs(project: Project, plan: ImageIdentity, ray_version: str | None) -> None:
    """What `submit --address` would refuse, as a warning: the file may be submitted from elsewhere."""
    client = Client.here()
    if client.ray is None:
        return
    try:
        python = image_python(plan, job_reference(project, plan))
    except EngineError:  # no daemon to ask: the label is a bonus
        python = None
    try:
        check_client(client, image_ray=ray_version, image_python=python, requires_python=project.requires_python)
    except ToolError as exc:
        logging.getLogger("raybake.jobs").warning("%s; submit this config with a client that matches (%s)",
                                                  exc.message, exc.fix)


def _warn_if_pin_is_stale(project: Project, plan: ImageIdentity) -> None:
    """Job configs name the pinned reference; say so when it is not what this lock builds."""
    from raybake.pin import pinned_reference

    pinned = pinned_reference(project.root, plan.spec.name)
    if pinned is not None and pinned != plan.reference:
        logging.getLogger("raybake.jobs").warning(
            "raybake-pin.json names %s for spec '%s', but the current lock and settings give %s: the job "
            "config names the pinned image; to name the current one run `raybake pin` (and commit "
            "raybake-pin.json)", pinned, plan.spec.name, plan.reference)


def job_reference(project: Project, plan: ImageIdentity) -> str:
    """REPOSITORY:TAG a job config names: the pin when the project has one."""
    from raybake.pinfile import pinned_reference

    return pinned_reference(project.root, plan.spec.name) or plan.reference


def image_for_job(project: Project, plan: ImageIdentity) -> str:
    """The image a `ray` job config names for a Ray on this machine: the local
    tag (or the pin's) for a local name, else as :func:`cluster_image` names it."""
    reference = job_reference(project, plan)
    return cluster_image(project, plan, "--format ray") if Reference.parse(reference).registry else reference


CLUSTER_IMAGE_FIX = ("give the image a repository with the registry host the cluster pulls from "
                     "(`repository = \"ghcr.io/ORG/APP\"` in [tool.raybake], `repository:` in the spec, or "
                     "RAYBAKE_REPOSITORY), then push it: `raybake build --push`")


def pullable_reference(project: Project, plan: ImageIdentity, purpose: str) -> str:
    """The reference a cluster config names, refused (before anything is built
    or asked) when it is a local name that no cluster can pull."""
    reference = job_reference(project, plan)
    if Reference.parse(reference).registry is None:
        raise JobConfigError(
            f"{purpose} names an image a cluster pulls, but {reference} is a local name: no cluster can "
            "pull it (Docker would look for Docker Hub's official library/ images)", fix=CLUSTER_IMAGE_FIX)
    return reference


def on_this_machine(address: str) -> bool:
    """Is a Ray address (``http://HOST:PORT``, ``ray://...``, ``HOST:PORT``, ``auto``) this machine's loopback?"""
    import ipaddress

    if address in ("auto", "local"):
        return True
    host = urlparse(address if "://" in address else f"//{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cluster_image(project: Project, plan: ImageIdentity, purpose: str) -> str:
    """``REPOSITORY@sha256:...``: the spec's image (the pin's reference when the
    project has one) as its registry holds it, its input-hash label checked.
    Every config meant for a cluster names its image this way (``purpose`` says
    which, for the error): a local name, or an image not pushed, is an error
    saying how to push it; a foreign image under the tag is one naming both hashes.
    With a verification key configured, only a digest with a statement signed by it."""
    from raybake.signing import verification_key
    from raybake.trust import registry_digest_reference

    reference = pullable_reference(project, plan, purpose)
    # Only the digest of an image whose input-hash label matches: a pin names its tag's 16 digits.
    want = plan.input_hash.hexdigest if reference == plan.reference else tag_hash(reference)
    digest_reference = registry_digest_reference(reference, want, platform=plan.spec.platform,
                                                 key=verification_key(project))
    if digest_reference is None:
        raise RegistryError(f"{reference} is not in its registry yet: {purpose} names an image a cluster pulls",
                            fix="push it with `raybake build --push`")
    return digest_reference
