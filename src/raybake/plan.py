"""Planning: spec + project -> BuildPlan. Pure: no subprocess, no daemon."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from raybake import __version__
from raybake.errors import ProjectError
from raybake.hashing import InputHash, hash_inputs
from raybake.project import Project
from raybake.spec import ImageSpec

# Bump when render() changes what it emits for the same plan: it is hashed.
TEMPLATE_VERSION = 4
SOURCE_DATE_EPOCH = 0  # fixed, for reproducible digests
PROJECT_DIR = "/opt/project"  # where the lock and pyproject are bound during uv sync
SUPPORTED_LOCK_VERSION = 1  # uv.lock `version` the bundled uv reads
LABEL_PREFIX = "dev.raybake"
# The proxy CA bundle reaches uv through a read-only bind mount from this named
# build context, not a BuildKit secret: a secret mount costs 1-3 s per RUN step
# here (docker/buildx#2479), and a CA bundle holds only public certificates.
# Like a secret it never reaches a layer, the image config or the tag.
CA_CONTEXT = "ca"
CA_FILE = "ca.pem"
SEAL_SCRIPT = "raybake/seal_layer.py"  # context path; run after each dependency install


@cache
def base_dockerfile() -> str:
    return files("raybake").joinpath("templates/Dockerfile.base").read_text(encoding="utf-8")


@cache
def seal_script() -> str:
    return files("raybake").joinpath("templates/seal_layer.py").read_text(encoding="utf-8")


@cache
def template_digest() -> str:
    h = hashlib.sha256(f"raybake-template-{TEMPLATE_VERSION}\n".encode())
    h.update(base_dockerfile().encode())
    h.update(seal_script().encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ContextFile:
    """A file copied into the staged build context."""

    source: Path
    target: str  # POSIX path inside the context


@dataclass(frozen=True)
class SyncLayer:
    """One ``RUN uv sync`` step installing (part of) the locked environment."""

    uv_args: tuple[str, ...]


@dataclass(frozen=True)
class PinnedLayer:
    """One ``RUN uv pip install --no-deps --require-hashes`` of a fixed set of
    locked packages; see raybake.layers."""

    name: str  # "heavy-<package>" or "medium"; also names its requirements file
    packages: tuple[str, ...]
    requirements: str  # context path of the generated requirements file


@dataclass(frozen=True)
class GeneratedFile:
    """A file raybake writes into the build context."""

    target: str
    content: str


@dataclass(frozen=True)
class BuildPlan:
    spec: ImageSpec
    input_hash: InputHash
    reference: str
    apt_packages: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    dep_layers: tuple[PinnedLayer | SyncLayer, ...]  # lowest first; the last is the sync
    context_files: tuple[ContextFile, ...]
    bind_files: tuple[str, ...]  # context paths bound into PROJECT_DIR for uv
    index_secrets: tuple[str, ...]  # host variables passed as BuildKit secrets of the same name; never hashed
    build_args: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    generated_files: tuple[GeneratedFile, ...] = ()

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


def reference_for(spec: ImageSpec, input_hash: InputHash) -> str:
    return f"{spec.repository}:{spec.name}-{input_hash.short}"


def uv_selection_args(spec: ImageSpec) -> tuple[str, ...]:
    """The groups and extras a spec selects, as uv flags (for sync and export alike)."""
    args = [] if spec.dev else ["--no-dev"]
    args.append("--no-default-groups")
    for group in spec.groups:
        args += ["--group", group]
    if spec.dev and "dev" not in spec.groups:
        args += ["--group", "dev"]
    for extra in spec.extras:
        args += ["--extra", extra]
    return tuple(args)


def uv_sync_args(project: Project, spec: ImageSpec) -> tuple[str, ...]:
    args = ["--frozen", "--no-install-project"]
    if project.members:
        args.append("--no-install-workspace")
    return (*args, *uv_selection_args(spec))


def lock_version(lock_bytes: bytes) -> int | None:
    """The lock format version from uv.lock's header, without parsing the whole
    file (tomllib takes 0.2 s on a 70-package lock)."""
    m = re.search(rb"^version\s*=\s*(\d+)\s*$", lock_bytes[:4096], re.M)
    return int(m.group(1)) if m else None


def check_lock_version(project: Project, uv_version: str) -> None:
    found = lock_version(project.lock_bytes)
    if found is not None and found > SUPPORTED_LOCK_VERSION:
        raise ProjectError(
            f"{project.root / 'uv.lock'} has lock format version {found}; "
            f"the uv in the image ({uv_version}) reads version {SUPPORTED_LOCK_VERSION}",
            fix="upgrade raybake's uv dependency to the uv release that wrote this lock "
                "(see `uv --version` where the lock was made)")


def plan_build(project: Project, spec: ImageSpec, *, uv_version: str) -> BuildPlan:
    check_lock_version(project, uv_version)
    input_hash = hash_inputs(project, spec, uv_version=uv_version, template_digest=template_digest())
    context = [ContextFile(project.root / "pyproject.toml", "pyproject.toml"),
               ContextFile(project.root / "uv.lock", "uv.lock")]
    context += [ContextFile(project.root / m.path / "pyproject.toml", f"{m.path}/pyproject.toml")
                for m in project.members]
    return BuildPlan(
        spec=spec,
        input_hash=input_hash,
        reference=reference_for(spec, input_hash),
        apt_packages=spec.apt_packages,
        env=spec.env,
        dep_layers=(SyncLayer(uv_sync_args(project, spec)),),
        context_files=tuple(context),
        bind_files=tuple(c.target for c in context),
        index_secrets=spec.index_secrets,
        build_args=(("BASE_IMAGE", spec.base_image), ("PYTHON_VERSION", spec.python),
                    ("SOURCE_DATE_EPOCH", str(SOURCE_DATE_EPOCH))),
        labels=((f"{LABEL_PREFIX}.input-hash", input_hash.hexdigest),
                (f"{LABEL_PREFIX}.spec", spec.name),
                (f"{LABEL_PREFIX}.project", project.name),
                (f"{LABEL_PREFIX}.version", __version__)),
        generated_files=(GeneratedFile(SEAL_SCRIPT, seal_script()),),
    )
