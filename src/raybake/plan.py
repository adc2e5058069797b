"""Planning, pure: no subprocess, no daemon.

Two steps. ``identify`` says what an image *is*: its spec, input hash and
reference (cheap; all that `tag`, `pin` and job configs need). ``plan_build``
says how it is *made*: the layers, context files, mounts, build args and
labels, from the identity plus two facts found outside (raybake.planner): the
lock's requirements exported for the spec, and the base image's Python."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from raybake import __version__, contract
from raybake.errors import ProjectError, SpecError
from raybake.hashing import InputHash, hash_inputs
from raybake.layers import declared_indexes, pinned_layers
from raybake.lockfile import SUPPORTED_LOCK_VERSION, LockFile, lock_header
from raybake.project import Project
from raybake.reference import Reference
from raybake.spec import ImageSpec

SOURCE_DATE_EPOCH = 0  # fixed, for reproducible digests
# The proxy CA bundle reaches uv through a read-only bind mount from this named
# build context, not a BuildKit secret: a secret mount costs 1-3 s per RUN step
# here (docker/buildx#2479), and a CA bundle holds only public certificates.
# Like a secret it never reaches a layer, the image config or the tag.
CA_CONTEXT = "ca"
CA_FILE = "ca.pem"
SEAL_SCRIPT = f"raybake/{contract.SEAL_SCRIPT}"  # context path; run after each dependency install


@dataclass(frozen=True)
class ImageIdentity:
    """What an image is: the spec, the hash of what decides it, its reference,
    and the digest of the base image it is built from when that is known
    without asking anyone (hashed: a recorded base that moves makes another image)."""

    spec: ImageSpec
    input_hash: InputHash
    reference: str
    base_digest: str | None  # sha256:..., from the base's name or raybake-pin.json; None: by name

    @property
    def tag(self) -> str:
        return Reference.parse(self.reference).tag or ""

    def as_json(self) -> dict[str, str | None]:
        """What `raybake tag --json` gives per spec."""
        return {"spec": self.spec.name, "reference": self.reference, "input_hash": self.input_hash.hexdigest,
                "base_image": self.spec.base_image, "base_digest": self.base_digest,
                "uv_version": self.spec.uv_version, "platform": self.spec.platform}

    @property
    def base_reference(self) -> str:
        """The base image as the build's FROM takes it: by digest when it is known."""
        if self.base_digest is None:
            return self.spec.base_image
        return str(Reference.parse(self.spec.base_image).with_name_and_digest(self.base_digest))


@dataclass(frozen=True)
class ContextFile:
    """A file of the project copied into the build context (only pyproject.toml
    files, uv.lock and path-source artifacts: never source)."""

    source: str  # relative to the project root, POSIX
    target: str  # POSIX path inside the context


@dataclass(frozen=True)
class GeneratedFile:
    """A file raybake writes into the build context (requirements, the seal script)."""

    target: str  # POSIX path inside the context
    content: str


@dataclass(frozen=True)
class SyncLayer:
    """One ``RUN uv sync`` step installing (the rest of) the locked environment."""

    uv_args: tuple[str, ...]


@dataclass(frozen=True)
class PinnedLayer:
    """One ``RUN uv pip install --no-deps --require-hashes`` of a fixed set of
    locked packages; see raybake.layers."""

    name: str  # "heavy-<package>", "medium", ...; also names its requirements file
    packages: tuple[str, ...]
    requirements: str  # context path of the generated requirements file
    default_index: str | None = None  # uv's --default-index ([NAME=]URL); None: PyPI
    secrets: tuple[str, ...] = ()  # the index's credentials, as BuildKit secrets of this step only


@dataclass(frozen=True)
class BuildPlan:
    """How an image is made; everything render() and the executor need."""

    identity: ImageIdentity
    python: str  # X.Y.Z of the base image's interpreter the venv is made from
    user: str  # the base image's user, restored at the end ("root" when it has none)
    requirements: str  # `uv export` of the spec's selection (with hashes); verification reads it too
    apt_packages: tuple[str, ...]  # below the dependency layers (building sdists may need them)
    env: tuple[tuple[str, str], ...]
    dep_layers: tuple[PinnedLayer | SyncLayer, ...]  # lowest first; the last is the sync
    context_files: tuple[ContextFile, ...]
    bind_files: tuple[str, ...]  # context paths bound into the project dir for uv sync
    index_secrets: tuple[str, ...]  # host variables passed as BuildKit secrets of the same name; never hashed
    build_args: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    generated_files: tuple[GeneratedFile, ...] = ()
    runtime_apt_packages: tuple[str, ...] = ()  # above the dependency layers: a change rebuilds only their layer
    workdir: str = "/"  # the base image's working directory, restored with its user

    @property
    def spec(self) -> ImageSpec:
        return self.identity.spec

    @property
    def reference(self) -> str:
        return self.identity.reference

    @property
    def input_hash(self) -> InputHash:
        return self.identity.input_hash


def reference_for(spec: ImageSpec, input_hash: InputHash) -> str:
    return f"{spec.repository}:{spec.name}-{input_hash.short}"


def tag_hash(reference: str) -> str:
    """The input-hash digits a raybake reference's tag carries (reference_for's NAME-HASH16).
    Without a tag, the reference itself: no input hash starts with it."""
    tag = Reference.parse(reference).tag
    return tag.rsplit("-", 1)[-1] if tag else reference


def check_lock_version(project: Project, spec: ImageSpec) -> None:
    found = lock_header(project.lock_bytes).version
    if found is not None and found > SUPPORTED_LOCK_VERSION:
        raise ProjectError(
            f"{project.root / 'uv.lock'} has lock format version {found}; "
            f"the uv in the image ({spec.uv_version}) reads version {SUPPORTED_LOCK_VERSION}",
            fix="set uv_version (in [tool.raybake] or the spec) to the uv release that wrote this lock "
                "(`uv --version` where the lock was made), or upgrade raybake")


def identify(project: Project, spec: ImageSpec, *, base_digest: str | None,
             template_digest: str) -> ImageIdentity:
    """``base_digest``: spec.base_image's digest when known (its own, or the one
    raybake-pin.json records; see raybake.planner.known_base_digests);
    ``template_digest``: raybake.dockerfile.template_digest(), raybake's own part of every tag."""
    check_lock_version(project, spec)
    input_hash = hash_inputs(project, spec, template_digest=template_digest, base_digest=base_digest)
    return ImageIdentity(spec, input_hash, reference_for(spec, input_hash), base_digest)


def pinned_digest(base_image: str) -> str | None:
    """The digest a base image names itself (NAME@sha256:...): nothing to resolve."""
    return Reference.parse(base_image).digest


# ---- selection: which of the lock a spec installs ----

def uv_selection_args(project: Project, spec: ImageSpec) -> tuple[str, ...]:
    """The packages, groups and extras a spec selects, as uv flags (sync and export alike).

    A workspace whose root is virtual or declares no dependencies of its own
    installs every member's (``--all-packages``), as ``uv sync`` there would
    install nothing useful."""
    args = []
    if spec.package:
        args += ["--package", spec.package]
    elif spec.all_packages or (project.members and (project.virtual or not project.root_has_dependencies)):
        args.append("--all-packages")
    args += [] if spec.dev else ["--no-dev"]
    args.append("--no-default-groups")
    for group in spec.groups:
        args += ["--group", group]
    if spec.dev and "dev" not in spec.groups:
        args += ["--group", "dev"]
    for extra in spec.extras:
        args += ["--extra", extra]
    return tuple(args)


def selected_local_packages(project: Project, spec: ImageSpec, lock: LockFile) -> frozenset[str]:
    """The names of the project's own packages a spec's selection holds (as
    uv_selection_args selects them), with the local packages they depend on,
    through the lock: what must import from working_dir, so the roots on
    PYTHONPATH (Project.python_roots) are theirs alone."""
    local = {project.name, *(p.name for p in project.local_packages)}
    if spec.package:
        start = {spec.package}
    elif "--all-packages" in uv_selection_args(project, spec):
        start = {project.name, *(m.name for m in project.members)}
    else:
        start = {project.name}
    groups = {*spec.groups, *(("dev",) if spec.dev else ())}
    seen: set[tuple[str, tuple[str, ...], bool]] = set()
    todo = [(name, tuple(spec.extras), True) for name in start]  # (package, its extras, chosen by the spec)
    while todo:
        visit = todo.pop()
        name, extras, chosen = visit
        package = lock.package(name)
        if visit in seen or name not in local or package is None:
            continue
        seen.add(visit)
        deps = [*package.dependencies,
                *(d for extra, ds in package.optional_dependencies if extra in extras for d in ds),
                *(d for group, ds in package.dependency_groups if chosen and group in groups for d in ds)]
        todo += [(d.name, d.extras, False) for d in deps]
    return frozenset(name for name, _, _ in seen)


def local_package_args(project: Project, *, verb: str) -> tuple[str, ...]:
    """Leave the project's own packages out: they ship through working_dir.
    ``verb`` is "install" (uv sync) or "emit" (uv export)."""
    args = [f"--no-{verb}-project"]
    if project.members:
        args.append(f"--no-{verb}-workspace")
    for package in project.path_packages:
        args += [f"--no-{verb}-package", package.name]
    return tuple(args)


def uv_sync_args(project: Project, spec: ImageSpec) -> tuple[str, ...]:
    return ("--frozen", *local_package_args(project, verb="install"), *uv_selection_args(project, spec))


def needs_git(requirements: str) -> bool:
    """A git source among the spec's requirements: uv clones it with git."""
    return "git+" in requirements


# ---- the base image's Python ----

def resolve_python(spec: ImageSpec, requires_python: str | None, interpreters: dict[str, str]) -> str:
    """The X.Y.Z of the base image's interpreter the venv is made from.

    ``interpreters`` maps command names found in the base (python3, python3.11)
    to their versions. A spec or .python-version that names X.Y needs pythonX.Y
    (a different patch release is accepted: a developer's pin is not the
    cluster's); without one, the base's own python3 when it satisfies
    requires-python, else its newest pythonX.Y that does."""
    found = ", ".join(f"{cmd} ({v})" for cmd, v in sorted(interpreters.items())) or "no python3 at all"
    where = f"base image {spec.base_image}"
    try:
        allowed = SpecifierSet(requires_python or "")
    except InvalidSpecifier:
        allowed = SpecifierSet()

    def ok(version: str) -> bool:
        return allowed.contains(version, prereleases=True)

    if spec.python:
        minor = ".".join(spec.python.split(".")[:2])
        version = interpreters.get(f"python{minor}")
        if version is None and spec.python_apt:
            version = spec.python  # comes in through apt before the venv is made; verified after the build
        if version is None:
            asked_in = spec.python_source or spec.source
            change = (f"change {asked_in} (or set `python:` in {spec.source})" if asked_in != spec.source
                      else f"set `python:` in {spec.source}")
            raise SpecError(f"{asked_in}: Python {spec.python} is asked for, but the {where} has {found}",
                            fix=f"set base_image to an image with python{minor}, or {change} to a version "
                                "the base image has")
    elif spec.python_apt:
        raise SpecError(f"{spec.source}: python_apt brings Python into the image, but no version is asked for",
                        fix='set `python: "3.X"` to the version those packages install')
    else:
        candidates = [interpreters.get("python3")] + sorted(
            (v for c, v in interpreters.items() if re.fullmatch(r"python3\.\d+", c)),
            key=lambda v: tuple(int(x) for x in v.split(".")[:3] if x.isdigit()), reverse=True)
        version = next((v for v in candidates if v and ok(v)), None)
        if version is None:
            raise SpecError(f"{spec.source}: the {where} has {found}; none satisfies requires-python "
                            f"{requires_python}",
                            fix="set base_image to an image whose Python satisfies requires-python, "
                                "or widen requires-python in pyproject.toml and run `uv lock`")
    if not ok(version):
        raise SpecError(f"{spec.source}: the {where} has Python {version}, which does not satisfy "
                        f"requires-python {requires_python}",
                        fix="set base_image to an image whose Python satisfies requires-python, "
                            "or change requires-python in pyproject.toml and run `uv lock`")
    return version


# ---- the recipe ----

def plan_build(project: Project, identity: ImageIdentity, *, requirements: str, lock: LockFile,
               python: str, user: str = "root", workdir: str = "/") -> BuildPlan:
    """The whole recipe of an image. ``requirements`` is `uv export --frozen`
    (with hashes) of the spec's selection; ``python`` the base image's X.Y.Z."""
    spec = identity.spec
    context = [ContextFile("pyproject.toml", "pyproject.toml"), ContextFile("uv.lock", "uv.lock")]
    context += [ContextFile(f"{p.path}/pyproject.toml", f"{p.path}/pyproject.toml")
                for p in project.local_packages if p.pyproject]
    context += [ContextFile(a.path, a.path) for a in project.path_artifacts]
    generated = [GeneratedFile(SEAL_SCRIPT, contract.in_image_source(contract.SEAL_SCRIPT))]
    layers: list[PinnedLayer | SyncLayer] = []
    indexes = declared_indexes([project.pyproject, *(p.pyproject for p in project.local_packages if p.pyproject)])
    for choice in pinned_layers(requirements, lock, platform=spec.platform, python=python,
                                heavy_override=spec.heavy_packages, indexes=indexes, secrets=spec.index_secrets):
        target = f"layers/{choice.name}.txt"
        generated.append(GeneratedFile(target, choice.requirements))
        layers.append(PinnedLayer(choice.name, choice.packages, target, choice.access.default_index,
                                  choice.access.secrets))
    layers.append(SyncLayer(uv_sync_args(project, spec)))
    apt = set(spec.apt_packages)
    if needs_git(requirements):
        apt.add("git")
    return BuildPlan(
        identity=identity,
        python=python,
        user=user or "root",
        workdir=workdir,
        requirements=requirements,
        apt_packages=tuple(sorted(apt)),
        env=spec.env,
        dep_layers=tuple(layers),
        context_files=tuple(context),
        bind_files=tuple(c.target for c in context),
        index_secrets=spec.index_secrets,
        build_args=(("BASE_IMAGE", identity.base_reference), ("PYTHON_VERSION", ".".join(python.split(".")[:2])),
                    ("PYTHON_APT_PACKAGES", " ".join(spec.python_apt)),
                    ("SOURCE_DATE_EPOCH", str(SOURCE_DATE_EPOCH))),
        labels=((contract.LABEL_INPUT_HASH, identity.input_hash.hexdigest),
                (contract.LABEL_SPEC, spec.name),
                (contract.LABEL_PROJECT, project.name),
                (contract.LABEL_VERSION, __version__),
                (contract.LABEL_PYTHON, python)),
        generated_files=tuple(generated),
        runtime_apt_packages=spec.runtime_apt_packages,
    )
