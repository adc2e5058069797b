"""Executing build plans: exists-check, build, verify, tag, push.

The thin layer between pure planning (raybake.plan, raybake.dockerfile) and
the engine (raybake.tools.docker). A bad or interrupted build never receives
the lock-hash tag: the image is built to an untagged archive, loaded by ID,
verified, and only then tagged and pushed."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from raybake import locks
from raybake.certs import bundle_for_build
from raybake.dockerfile import render
from raybake.paths import cache_dir
from raybake.plan import CA_CONTEXT, CA_FILE, SOURCE_DATE_EPOCH, BuildPlan, ImageIdentity
from raybake.planner import check_lock_in_base, identities_for, make_plan
from raybake.errors import NoInterpreter
from raybake.project import Project, load_project
from raybake.spec import host_platform
from raybake.tools import docker
from raybake.tools.uv import lock_check, uv_bin_for

BuildStatus = Literal["built", "built and pushed", "pushed", "up to date"]


@dataclass(frozen=True)
class BuildResult:
    reference: str
    status: BuildStatus
    image_id: str | None
    digest_reference: str | None  # repository@sha256:..., when pushed
    size: int | None
    seconds: float


class Reporter:
    """Where progress goes. The default says nothing; the CLI prints."""

    def step(self, message: str) -> None: ...

    def build_line(self, line: str) -> None: ...

    def job_line(self, line: str) -> None: ...


def is_registry_repository(repository: str) -> bool:
    """True when the repository names a registry host (``host[:port]/...``)."""
    first, _, rest = repository.partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


def decide(plan: ImageIdentity, *, push: bool, force: bool) -> str:
    """What a build of ``plan`` must do: "skip", "push" (already built here) or "build".

    Without --push the local store answers first, then a registry named in the
    repository; with --push only the registry counts. A registry that cannot be
    asked raises RegistryError: never "assume it exists"."""
    if force:
        return "build"
    local = docker.local_image_id(plan.reference) is not None
    if push:
        if docker.registry_has(plan.reference):
            return "skip"
        return "push" if local else "build"
    if local or (is_registry_repository(plan.spec.repository) and docker.registry_has(plan.reference)):
        return "skip"
    return "build"


def build(project_dir: Path, names: tuple[str, ...] = (), *, all_specs: bool = False,
          push: bool = False, force: bool = False, no_cache: bool = False, reporter: Reporter | None = None,
          verify: Callable[[Project, BuildPlan, str], None] | None = None) -> list[BuildResult]:
    """Build (only when absent) every selected spec of the project at ``project_dir``."""
    reporter = reporter or Reporter()
    project = load_project(project_dir)
    plans = identities_for(project, names, all_specs=all_specs)  # pure: spec and lock-format errors first
    lock_checked = check_lock(project)
    return [build_plan(project, plan, push=push, force=force, no_cache=no_cache, reporter=reporter,
                       verify=verify, lock_checked=lock_checked)
            for plan in plans]


def check_lock(project: Project) -> bool:
    """Check uv.lock here; False when this machine has no interpreter uv can check
    it with: then every image that must be built checks it in its base image
    first (an image that exists was built from this very lock, checked then)."""
    try:
        lock_check(project)
    except NoInterpreter:
        return False
    return True


def build_plan(project: Project, plan: ImageIdentity, *, push: bool = False, force: bool = False,
               no_cache: bool = False, reporter: Reporter, verify: Callable[[Project, BuildPlan, str], None] | None = None,
               lock_checked: bool = True) -> BuildResult:
    start = time.monotonic()
    action = decide(plan, push=push, force=force)
    if action == "skip":
        return BuildResult(plan.reference, "up to date", None, None, None, time.monotonic() - start)
    # One build per reference at a time, across processes; a waiter then finds it done.
    with locks.build_lock(plan.reference, on_wait=lambda s: reporter.step(
            f"waiting for another raybake that is building {plan.reference} ({s:.0f} s)")):
        if not force:
            action = decide(plan, push=push, force=False)
        if action == "skip":
            return BuildResult(plan.reference, "up to date", None, None, None, time.monotonic() - start)
        if action == "build":
            recipe = make_plan(project, plan)  # the base's Python and the lock's selection, before building
            if not lock_checked:
                reporter.step(f"checking uv.lock with the Python of {plan.spec.base_image}")
                check_lock_in_base(project, recipe)
            reporter.step(f"building {plan.reference} (Python {recipe.python} from {plan.spec.base_image})")
            image_id = _build_image(project, recipe, reporter, no_cache=no_cache)
            try:
                if verify is not None:
                    reporter.step(f"verifying the environment of {plan.reference}")
                    verify(project, recipe, image_id)
                docker.tag(image_id, plan.reference)
            except BaseException:
                docker.remove_image(image_id)  # never leave a rejected image behind
                raise
        else:
            image_id = docker.local_image_id(plan.reference)
        digest_ref = None
        if push:
            reporter.step(f"pushing {plan.reference}")
            digest_ref = docker.push(plan.reference)
    status = {"build": "built and pushed" if push else "built", "push": "pushed"}[action]
    return BuildResult(plan.reference, status, image_id, digest_ref,
                       docker.image_size(plan.reference), time.monotonic() - start)


def _build_image(project: Project, plan: BuildPlan, reporter: Reporter, *, no_cache: bool) -> str:
    """Build into an untagged image; return its ID. Temporary files never outlive the call."""
    scratch = cache_dir() / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=scratch) as tmp:
        tmpdir = Path(tmp)
        context = tmpdir / "context"
        for f in plan.context_files:
            dest = context / f.target
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project.root / f.source, dest)
        for g in plan.generated_files:
            dest = context / g.target
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(g.content, encoding="utf-8")
        uv_ctx = tmpdir / "uv"
        uv_ctx.mkdir()
        shutil.copy2(uv_bin_for(plan.spec.platform, host_platform()), uv_ctx / "uv")
        os.utime(uv_ctx / "uv", (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))  # COPY keeps it: same bytes on every machine
        ca_ctx = tmpdir / "ca"
        ca_ctx.mkdir()
        ca = plan.spec.ca_bundle  # this machine's proxy CA; never hashed
        (ca_ctx / CA_FILE).write_bytes(bundle_for_build(ca) if ca else b"")
        dockerfile = tmpdir / "Dockerfile"
        dockerfile.write_text(render(plan), encoding="utf-8")
        return docker.build_image(docker.BuildRequest(
            context=context,
            dockerfile=dockerfile,
            build_contexts={"uv": uv_ctx, CA_CONTEXT: ca_ctx},
            build_args=dict(plan.build_args),
            secrets=tuple(f"id={name},env={name}" for name in plan.index_secrets),
            network=plan.spec.network,
            platform=plan.spec.platform,
            metadata_file=tmpdir / "metadata.json",
            cache=not no_cache,
        ), on_line=reporter.build_line)
