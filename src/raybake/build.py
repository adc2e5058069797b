"""Executing build plans: exists-check, build, verify, tag, push.

The thin layer between pure planning (raybake.plan, raybake.dockerfile) and
the engine (raybake.tools.docker). A bad or interrupted build never receives
the lock-hash tag: the image is built into the local store untagged, verified,
and only then tagged and pushed. An image under the tag counts as built only
when its input-hash label is the plan's."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from raybake import locks
from raybake.buildcache import CacheOptions, cache_options
from raybake.certs import bundle_for_build
from raybake.dockerfile import render
from raybake.errors import NoInterpreter, RaybakeError, VerificationFailed
from raybake.paths import scratch_dir
from raybake.plan import CA_CONTEXT, CA_FILE, SOURCE_DATE_EPOCH, BuildPlan, ImageIdentity
from raybake.planner import check_lock_in_base, identities_for, make_plan, moved_base
from raybake.progress import Labelled, Reporter
from raybake.project import Project, load_project
from raybake.reference import Reference
from raybake.settings import BUILD_JOBS
from raybake.spec import ImageSpec, host_platform
from raybake.tools import docker
from raybake.tools.run import stopping
from raybake.tools.uv import lock_check, uv_bin_for
from raybake.trust import Engine, foreign_image, registry_digest_reference

BuildStatus = Literal["built", "built and pushed", "pushed", "up to date"]


@dataclass(frozen=True)
class BuildResult:
    reference: str
    status: BuildStatus
    image_id: str | None  # the verified local image; None when only its registry has it
    digest_reference: str | None  # repository@sha256:..., when pushed or found there
    size: int | None
    seconds: float


@dataclass(frozen=True)
class Decision:
    """What a build of a plan must do, and why."""

    action: Literal["skip", "push", "build"]  # "push": built here already, not in the registry yet
    note: str | None = None  # why an image present under the tag is built again
    digest_reference: str | None = None  # repository@sha256:... of the registry's image, when checked
    image_id: str | None = None  # the local image whose label was checked: what to run, not the movable tag


def decide(plan: ImageIdentity, *, push: bool, force: bool, engine: Engine = docker) -> Decision:
    """What a build of ``plan`` must do.

    An image counts only when its input-hash label is the plan's: a foreign
    image under the tag locally is built over (and said so); in the registry
    it is a RegistryError. Without --push the local store answers first, then
    a registry named in the repository; with --push only the registry counts.
    A registry that cannot be asked raises RegistryError: never "assume it exists"."""
    if force:
        return Decision("build")
    want = plan.input_hash.hexdigest
    local = engine.local_image(plan.reference)
    note = foreign_image(plan.reference, local.input_hash, want) if local is not None else None
    here = local is not None and note is None
    if push:
        if (remote := registry_digest_reference(plan.reference, want, platform=plan.spec.platform,
                                                engine=engine)) is not None:
            return Decision("skip", digest_reference=remote, image_id=local.image_id if here else None)
        return Decision("push", image_id=local.image_id) if here else Decision("build", note)
    if here:
        return Decision("skip", image_id=local.image_id)
    if local is None and Reference.parse(plan.reference).registry and (
            remote := registry_digest_reference(plan.reference, want, platform=plan.spec.platform,
                                                engine=engine)) is not None:
        return Decision("skip", digest_reference=remote)
    return Decision("build", note)


@dataclass(frozen=True)
class BuildFailure:
    """A spec whose build failed while others went on (``raybake build --all``)."""

    reference: str
    error: RaybakeError


Outcome = BuildResult | BuildFailure


def build(project_dir: Path, names: tuple[str, ...] = (), *, all_specs: bool = False,
          push: bool = False, force: bool = False, no_cache: bool = False, keep_failed: bool = False,
          reporter: Reporter | None = None,
          verify: Callable[[Project, BuildPlan, str], None] | None = None,
          cache_from: tuple[str, ...] = (), cache_to: tuple[str, ...] = ()) -> list[Outcome]:
    """Build (only when absent) every selected spec of the project at ``project_dir``.

    With one spec its error is raised. With several, a failing spec does not
    stop the others: its error goes to ``reporter.failed`` and its place in the
    returned list is a BuildFailure. Specs on different base images build at
    the same time (at most RAYBAKE_BUILD_JOBS), those on one base one after
    another (see lanes); each line of progress then names its spec."""
    reporter = reporter or Reporter()
    project = load_project(project_dir)
    plans = identities_for(project, names, all_specs=all_specs)  # pure: spec and lock-format errors first
    by_name = {plan.spec.name: plan for plan in plans}
    lock_checked = check_lock(project)

    def one(spec: ImageSpec) -> Outcome:
        plan = by_name[spec.name]
        own = reporter if len(plans) == 1 else Labelled(reporter, spec.name)
        try:
            return ensure_image(project, plan, push=push, force=force, no_cache=no_cache,
                                keep_failed=keep_failed, reporter=own, verify=verify,
                                lock_checked=lock_checked, cache_from=cache_from, cache_to=cache_to)
        except RaybakeError as exc:
            if len(plans) == 1:
                raise
            reporter.failed(plan.reference, exc)
            return BuildFailure(plan.reference, exc)

    done = _side_by_side(lanes(tuple(plan.spec for plan in plans)), one, BUILD_JOBS.value())
    return [done[plan.spec.name] for plan in plans]


def lanes(specs: tuple[ImageSpec, ...]) -> list[list[ImageSpec]]:
    """Specs that may build at the same time, as lanes: one per base image and
    platform, its specs one after another, in the order given.

    Concurrent builds on one engine merge the steps they share (the base and
    the venv step above it), and the registry cache a build exports (--push,
    mode=max) or imports can then miss the chain above that step: the
    dependency layers are built again (README, "Shared build cache"). Specs
    on different bases share no step."""
    by_base: dict[tuple[str, str], list[ImageSpec]] = {}
    for spec in specs:
        by_base.setdefault((spec.base_image, spec.platform), []).append(spec)
    return list(by_base.values())


def _side_by_side(groups: list[list[ImageSpec]], build_one: Callable[[ImageSpec], Outcome],
                  jobs: int) -> dict[str, Outcome]:
    """Each lane of ``groups`` in a thread of its own, at most ``jobs`` at once
    (with one lane, or one job: all here, one after another); outcomes by spec name.

    Ctrl-C and SIGTERM reach only this (the main) thread: it then stops every
    child the others wait for (raybake.tools.run.stopping), waits until they
    have unwound (an unverified image removed, temporary files gone, locks
    released), and raises on."""
    def run_lane(lane: list[ImageSpec]) -> dict[str, Outcome]:
        return {spec.name: build_one(spec) for spec in lane}

    if len(groups) == 1 or jobs == 1:
        return {name: outcome for lane in groups for name, outcome in run_lane(lane).items()}
    with ThreadPoolExecutor(max_workers=min(jobs, len(groups)), thread_name_prefix="raybake-build") as pool:
        futures = [pool.submit(run_lane, lane) for lane in groups]
        try:
            wait(futures)
        except BaseException:
            with stopping():
                pool.shutdown(wait=True, cancel_futures=True)
            raise
    return {name: outcome for f in futures for name, outcome in f.result().items()}


def check_lock(project: Project) -> bool:
    """Check uv.lock here; False when this machine has no interpreter uv can check
    it with: then every image that must be built checks it in its base image
    first (an image that exists was built from this very lock, checked then)."""
    try:
        lock_check(project)
    except NoInterpreter:
        return False
    return True


def ensure_image(project: Project, plan: ImageIdentity, *, push: bool = False, force: bool = False,
               no_cache: bool = False, keep_failed: bool = False, reporter: Reporter,
               verify: Callable[[Project, BuildPlan, str], None] | None = None,
               lock_checked: bool = True, cache_from: tuple[str, ...] = (),
               cache_to: tuple[str, ...] = ()) -> BuildResult:
    start = time.monotonic()
    decision = decide(plan, push=push, force=force)
    if decision.action == "skip":
        return BuildResult(plan.reference, "up to date", decision.image_id, decision.digest_reference, None,
                           time.monotonic() - start)
    # One build per reference at a time, across processes; a waiter then finds it done.
    with locks.build_lock(plan.reference, on_wait=lambda s: reporter.step(
            f"waiting for another raybake that is building {plan.reference} ({s:.0f} s)")):
        if not force:
            decision = decide(plan, push=push, force=False)
        if decision.action == "skip":
            return BuildResult(plan.reference, "up to date", decision.image_id, decision.digest_reference,
                               None, time.monotonic() - start)
        if decision.action == "build":
            if decision.note:
                reporter.step(f"{decision.note}; building it again")
            if note := moved_base(plan):
                reporter.step(note)
            recipe = make_plan(project, plan)  # the base's Python and the lock's selection, before building
            if not lock_checked:
                reporter.step(f"checking uv.lock with the Python of {plan.spec.base_image}")
                check_lock_in_base(project, recipe)
            reporter.step(f"building {plan.reference} (Python {recipe.python} from {plan.base_reference})")
            cache = cache_options(plan.spec, push=push, cache_from=cache_from, cache_to=cache_to)
            image_id = _build_image(project, recipe, reporter, no_cache=no_cache, cache=cache)
            _verify_and_tag(project, plan, recipe, image_id, verify=verify, keep_failed=keep_failed,
                            reporter=reporter)
        else:
            image_id = decision.image_id
        digest_ref = None
        if push:
            reporter.step(f"pushing {plan.reference}")
            digest_ref = docker.push(plan.reference)  # the digest of exactly this (verified) image
    status = {"build": "built and pushed" if push else "built", "push": "pushed"}[decision.action]
    return BuildResult(plan.reference, status, image_id, digest_ref,
                       docker.image_size(plan.reference), time.monotonic() - start)


def rejected_reference(plan: ImageIdentity, image_id: str) -> str:
    """Where --keep-failed keeps an image that failed verification: never a lock-hash tag."""
    return f"{plan.spec.repository}:rejected-{plan.spec.name}-{image_id.removeprefix('sha256:')[:12]}"


def _verify_and_tag(project: Project, plan: ImageIdentity, recipe: BuildPlan, image_id: str, *,
                    verify: Callable[[Project, BuildPlan, str], None] | None, keep_failed: bool,
                    reporter: Reporter) -> None:
    """Tag the built image only when verification passes; otherwise remove it
    (or, with ``keep_failed``, keep it under rejected_reference)."""
    try:
        if verify is not None:
            reporter.step(f"verifying the environment of {plan.reference}")
            verify(project, recipe, image_id)
        docker.tag(image_id, plan.reference)
    except VerificationFailed as exc:
        if not keep_failed:
            docker.remove_image(image_id)
            raise
        kept = rejected_reference(plan, image_id)
        docker.tag(image_id, kept)
        raise VerificationFailed(
            f"{exc.message}\nthe rejected image is kept for inspection as {kept}",
            fix=f"{exc.fix} (look inside with `docker run --rm -it --entrypoint sh {kept}`; "
                f"remove it with `docker image rm {kept}`)") from None
    except BaseException:
        docker.remove_image(image_id)  # never leave a rejected or half-checked image behind
        raise


def _build_image(project: Project, plan: BuildPlan, reporter: Reporter, *, no_cache: bool,
                 cache: CacheOptions) -> str:
    """Build into an untagged image; return its ID. Temporary files never outlive the call."""
    with scratch_dir("build-") as tmpdir:
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
        # A fixed time: the named context, and so BuildKit's cache key, is the same on every machine.
        os.utime(uv_ctx / "uv", (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
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
            cache_from=cache.cache_from,
            cache_to=cache.cache_to,
            compression=plan.spec.compression,
        ), on_line=reporter.build_line)
