"""Executing build plans: exists-check, build, verify, tag, push.

The thin layer between pure planning (raybake.plan, raybake.dockerfile) and
the engine (raybake.tools.docker). A bad or interrupted build never receives
the lock-hash tag: the image is built into the local store untagged, verified,
and only then tagged and pushed. An image under the tag counts as built only
when its input-hash label is the plan's."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from raybake import locks
from raybake.buildcache import CacheOptions, cache_options
from raybake.certs import bundle_for_build
from raybake.contract import LABEL_INPUT_HASH
from raybake.dockerfile import render
from raybake.errors import (BuildError, ImageVanished, NoInterpreter, RaybakeError, RegistryError, SettingError,
                            VerificationFailed)
from raybake.paths import scratch_dir
from raybake.plan import CA_CONTEXT, CA_FILE, SOURCE_DATE_EPOCH, BuildPlan, ImageIdentity
from raybake.planner import (
    build_warnings,
    check_lock_in_base,
    identities_for,
    make_plan,
    moved_base,
    ray_without_default,
)
from raybake.progress import Labelled, Reporter
from raybake.project import Project, load_project
from raybake.reference import Reference
from raybake.settings import BUILD_JOBS
from raybake.signing import SigningKey, VerificationKey, key_pair_mismatch, verification_key
from raybake.sources import explain_build_failure
from raybake.spec import ImageSpec, host_platform
from raybake.tools import docker
from raybake.tools.run import stopping
from raybake.tools.uv import lock_check, uv_bin_for
from raybake.trust import (
    Engine,
    VerificationRecords,
    VerifiedImages,
    attach_record,
    attach_signed_statement,
    foreign_image,
    registry_digest_reference,
    unverified_image,
)
from raybake.verify import locked_selection

if TYPE_CHECKING:
    from raybake.verify import VerifyReport

log = logging.getLogger("raybake.build")

BuildStatus = Literal["built", "built and pushed", "pushed", "up to date"]


@dataclass(frozen=True)
class BuildResult:
    spec: str
    reference: str
    status: BuildStatus
    image_id: str | None  # the verified local image; None when only its registry has it
    digest_reference: str | None  # repository@sha256:..., when pushed or found there
    size: int | None
    seconds: float

    def as_json(self) -> dict[str, object]:
        """What `raybake build --json` and --metadata-file give per spec."""
        digest = self.digest_reference.rsplit("@", 1)[1] if self.digest_reference else None
        return {"spec": self.spec, "reference": self.reference, "status": self.status, "image_id": self.image_id,
                "digest": digest, "digest_reference": self.digest_reference, "size": self.size,
                "seconds": round(self.seconds, 3), "error": None}


@dataclass(frozen=True)
class Decision:
    """What a build of a plan must do, and why."""

    action: Literal["skip", "push", "build"]  # "push": built here already, not in the registry yet
    note: str | None = None  # why an image present under the tag is built again
    digest_reference: str | None = None  # repository@sha256:... of the registry's image, when checked
    image_id: str | None = None  # the local image whose label was checked: what to run, not the movable tag


def decide(plan: ImageIdentity, *, push: bool, force: bool, engine: Engine = docker,
           verified: VerifiedImages | None = None, key: VerificationKey | None = None) -> Decision:
    """What a build of ``plan`` must do.

    An image counts only when its input-hash label is the plan's: a foreign
    image under the tag locally is built over (and said so); in the registry
    it is a RegistryError. A local image counts only when it is the very image
    raybake verified (``verified``, by ID): otherwise it is built again (a
    reproducible build of the same inputs gives the same ID, then verified and
    recorded). Without --push the local store answers first, then
    a registry named in the repository; with --push only the registry counts.
    With a verification ``key``, a registry image counts only with a statement
    signed by it (raybake.trust.check_signed).
    A registry that cannot be asked raises RegistryError: never "assume it exists"."""
    if force:
        return Decision("build")
    want = plan.input_hash.hexdigest
    local = engine.local_image(plan.reference)
    note = foreign_image(plan.reference, local.input_hash, want) if local is not None else None
    if local is not None and note is None:
        note = unverified_image(plan.reference, local.image_id, verified or VerificationRecords(), want)
    here = local is not None and note is None
    if push:
        if (remote := registry_digest_reference(plan.reference, want, platform=plan.spec.platform,
                                                engine=engine, key=key)) is not None:
            return Decision("skip", digest_reference=remote, image_id=local.image_id if here else None)
        return Decision("push", image_id=local.image_id) if here else Decision("build", note)
    if here:
        return Decision("skip", image_id=local.image_id)
    if local is None and Reference.parse(plan.reference).registry and (
            remote := registry_digest_reference(plan.reference, want, platform=plan.spec.platform,
                                                engine=engine, key=key)) is not None:
        return Decision("skip", digest_reference=remote)
    return Decision("build", note)


@dataclass(frozen=True)
class BuildFailure:
    """A spec whose build failed (with several, while the others went on)."""

    spec: str
    reference: str
    error: RaybakeError

    def as_json(self) -> dict[str, object]:
        return {"spec": self.spec, "reference": self.reference, "status": "failed", "image_id": None,
                "digest": None, "digest_reference": None, "size": None, "seconds": None,
                "error": {"message": self.error.message, "fix": self.error.fix}}


Outcome = BuildResult | BuildFailure


def build(project_dir: Path, names: tuple[str, ...] = (), *, all_specs: bool = False,
          push: bool = False, force: bool = False, no_cache: bool = False, keep_failed: bool = False,
          reporter: Reporter | None = None,
          verify: Callable[[Project, BuildPlan, str], VerifyReport | None] | None = None,
          cache_from: tuple[str, ...] = (), cache_to: tuple[str, ...] = (),
          signing_key: SigningKey | None = None, audit: bool = False) -> list[Outcome]:
    """Build (only when absent) every selected spec of the project at ``project_dir``.

    A failing spec's place in the returned list is a BuildFailure holding its
    error; with several, it does not stop the others and its error goes to
    ``reporter.failed`` as it happens. Specs on different base images build at
    the same time (at most RAYBAKE_BUILD_JOBS), those on one base one after
    another (see lanes); each line of progress then names its spec. With
    ``signing_key``, each verified image pushed gets raybake's verification
    statement signed with it (raybake.signing). With ``audit``, each spec's
    selection is audited first, whether its image exists or not (raybake.audit.gate):
    findings at or above its audit_severity fail that spec before anything is built."""
    reporter = reporter or Reporter()
    project = load_project(project_dir)
    if mismatch := key_pair_mismatch(signing_key, verification_key(project)):
        raise SettingError(mismatch, fix="set the verification key (RAYBAKE_VERIFICATION_KEY or [tool.raybake] "
                                         "verification_key) to the signing key's public key, or sign with its pair")
    plans = identities_for(project, names, all_specs=all_specs)  # pure: spec and lock-format errors first
    by_name = {plan.spec.name: plan for plan in plans}
    lock_checked = check_lock(project)

    def one(spec: ImageSpec) -> Outcome:
        plan = by_name[spec.name]
        own = reporter if len(plans) == 1 else Labelled(reporter, spec.name)
        try:
            if audit:
                _audit(project, spec, own)
            return ensure_image(project, plan, push=push, force=force, no_cache=no_cache,
                                keep_failed=keep_failed, reporter=own, verify=verify,
                                lock_checked=lock_checked, cache_from=cache_from, cache_to=cache_to,
                                signing_key=signing_key)
        except RaybakeError as exc:
            if len(plans) > 1:
                reporter.failed(plan.reference, exc)
            return BuildFailure(spec.name, plan.reference, exc)

    done = _side_by_side(lanes(tuple(plan.spec for plan in plans)), one, BUILD_JOBS.value())
    return [done[plan.spec.name] for plan in plans]


def _audit(project: Project, spec: ImageSpec, reporter: Reporter) -> None:
    """The audit depends on the lock and the selection alone: it runs before the
    build, so a refused image costs nothing and nothing is built or tagged."""
    from raybake.audit import gate, service_url

    reporter.step(f"auditing the packages of spec '{spec.name}' against {service_url()}")
    gate(project, spec, warn=lambda message: reporter.step(f"warning: {message}"))


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
               verify: Callable[[Project, BuildPlan, str], VerifyReport | None] | None = None,
               lock_checked: bool = True, cache_from: tuple[str, ...] = (),
               cache_to: tuple[str, ...] = (), signing_key: SigningKey | None = None) -> BuildResult:
    start = time.monotonic()
    key = verification_key(project)
    decision = decide(plan, push=push, force=force, key=key)
    if decision.action == "skip":
        return BuildResult(plan.spec.name, plan.reference, "up to date", decision.image_id,
                           decision.digest_reference, None, time.monotonic() - start)
    # One build per reference at a time, across processes; a waiter then finds it done.
    with locks.build_lock(plan.reference, on_wait=lambda s: reporter.step(
            f"waiting for another raybake that is building {plan.reference} ({s:.0f} s)")):
        if not force:
            decision = decide(plan, push=push, force=False, key=key)
        if decision.action == "skip":
            return BuildResult(plan.spec.name, plan.reference, "up to date", decision.image_id,
                               decision.digest_reference, None, time.monotonic() - start)
        if decision.action == "build":
            if decision.note:
                reporter.step(f"{decision.note}; building it again")
            if note := moved_base(plan):
                reporter.step(note)
            recipe = make_plan(project, plan)  # the base's Python and the lock's selection, before building
            for warning in build_warnings(project, recipe, os.environ):
                reporter.step(f"warning: {warning}")
            if problem := ray_without_default(project, plan.spec.name, locked_selection(recipe.requirements, None)):
                reporter.step(f"warning: {problem.message}; fix: {problem.fix}")
            if not lock_checked:
                reporter.step(f"checking uv.lock with the Python of {plan.spec.base_image}")
                check_lock_in_base(project, recipe)
            reporter.step(f"building {plan.reference} (Python {recipe.python} from {plan.base_reference})")
            cache = cache_options(plan.spec, push=push, cache_from=cache_from, cache_to=cache_to)
            # Builds are reproducible: the build may give an image already here (under another
            # repository's tag, or this reference under --force), which a failure must not remove.
            present = docker.image_ids(f"{LABEL_INPUT_HASH}={plan.input_hash.hexdigest}")
            with _build_request(project, recipe, no_cache=no_cache, cache=cache) as request:
                for attempt in (1, 2):
                    try:
                        image_id = docker.build_image(request, on_line=reporter.build_line)
                    except BuildError as exc:
                        raise explain_build_failure(project, plan.spec, exc) from None
                    try:
                        report = _verify_and_tag(project, plan, recipe, image_id, verify=verify,
                                                 keep_failed=keep_failed, reporter=reporter,
                                                 created=image_id not in present)
                        break
                    except ImageVanished as exc:
                        # An identical build elsewhere took the untagged image over and removed it;
                        # built again (from the cache, in seconds), it is that very image once more.
                        if attempt == 2:
                            raise
                        reporter.step(f"{exc.message}; building it again")
                digest_ref = _push(plan, reporter, verified=verify is not None) if push else None
                if digest_ref and signing_key is not None:
                    if verify is None:
                        reporter.step("warning: not signed: raybake signs only what it verified (--no-verify)")
                    else:
                        _sign(project, plan, image_id, digest_ref, signing_key, reporter)
                if digest_ref:
                    _attach(project, recipe, image_id, digest_ref, report, reporter)
                _export_cache(request, cache, reporter)
        else:
            image_id = decision.image_id
            digest_ref = _push(plan, reporter, verified=True) if push else None  # decide checked its record
            if digest_ref and image_id:
                if signing_key is not None:
                    _sign(project, plan, image_id, digest_ref, signing_key, reporter)
                _attach(project, make_plan(project, plan), image_id, digest_ref, None, reporter)
    status = {"build": "built and pushed" if push else "built", "push": "pushed"}[decision.action]
    return BuildResult(plan.spec.name, plan.reference, status, image_id, digest_ref,
                       docker.image_size(plan.reference), time.monotonic() - start)


def rejected_reference(plan: ImageIdentity, image_id: str) -> str:
    """Where --keep-failed keeps an image that failed verification: never a lock-hash tag."""
    return f"{plan.spec.repository}:rejected-{plan.spec.name}-{image_id.removeprefix('sha256:')[:12]}"


def _verify_and_tag(project: Project, plan: ImageIdentity, recipe: BuildPlan, image_id: str, *,
                    verify: Callable[[Project, BuildPlan, str], VerifyReport | None] | None, keep_failed: bool,
                    reporter: Reporter, created: bool = True) -> VerifyReport | None:
    """Tag the built image only when verification passes; otherwise remove it
    (or, with ``keep_failed``, keep it under rejected_reference) when this run
    ``created`` it and no tag refers to it. Returns verification's report (None: not verified)."""
    try:
        report = None
        if verify is not None:
            reporter.step(f"verifying the environment of {plan.reference}")
            report = verify(project, recipe, image_id)
            VerificationRecords().add(image_id, plan.input_hash.hexdigest, plan.spec.name)
        docker.tag(image_id, plan.reference)
        return report
    except VerificationFailed as exc:
        if not keep_failed:
            _discard(image_id, created)
            raise
        kept = rejected_reference(plan, image_id)
        docker.tag(image_id, kept)
        raise VerificationFailed(
            f"{exc.message}\nthe rejected image is kept for inspection as {kept}",
            fix=f"{exc.fix} (look inside with `docker run --rm -it --entrypoint sh {kept}`; "
                f"remove it with `docker image rm {kept}`)") from None
    except BaseException:
        _discard(image_id, created)  # never leave a rejected or half-checked image behind
        raise


def _discard(image_id: str, created: bool) -> None:
    """Remove an image that failed or was interrupted, only when this run made it
    and nothing refers to it: the same image may be another repository's, or
    this reference's under --force, already verified and tagged."""
    if created:
        docker.remove_untagged_image(image_id)


def _push(plan: ImageIdentity, reporter: Reporter, *, verified: bool) -> str:
    reporter.step(f"pushing {plan.reference}")
    digest_reference = docker.push(plan.reference)  # the digest of exactly this image
    if verified:  # its verification record beside it, for exactly that digest (not with --no-verify)
        attach_record(digest_reference, plan.input_hash.hexdigest, plan.spec.name)
    return digest_reference


def _sign(project: Project, plan: ImageIdentity, image_id: str, digest_ref: str, key: SigningKey,
          reporter: Reporter) -> None:
    """Raybake's verification of the pushed image, signed, where cosign looks for attestations."""
    from raybake import __version__
    from raybake.signing import verification_statement

    pushed = Reference.parse(digest_ref)
    statement = verification_statement(
        repository=pushed.repository, digest=pushed.digest or "", input_hash=plan.input_hash.hexdigest,
        lock_sha256=hashlib.sha256(project.lock_bytes).hexdigest(), spec=plan.spec.name, image_id=image_id,
        raybake_version=__version__)
    reporter.step(f"signing raybake's verification of {digest_ref} with {key.verification_key().fingerprint}")
    attach_signed_statement(digest_ref, statement, key)


def _attach(project: Project, recipe: BuildPlan, image_id: str, digest_ref: str, report: VerifyReport | None,
            reporter: Reporter) -> None:
    """The SBOM and provenance of the pushed image, as referrers in its registry (raybake.attest)."""
    from raybake.attest import attach_documents

    reporter.step(f"attaching the SBOM and provenance to {digest_ref}")
    attach_documents(project, recipe, image_id, digest_ref, report.installed if report else None)


def _export_cache(request: docker.BuildRequest, cache: CacheOptions, reporter: Reporter) -> None:
    """Export the build cache of a verified image (see CacheOptions.after_verification).
    A failed or stalled export is a warning: the image is good, only the next
    fresh runner builds more."""
    if not cache.after_verification:
        return
    reporter.step(f"exporting the build cache to {', '.join(cache.after_verification)}")
    try:
        docker.export_cache(replace(request, cache_to=cache.after_verification), on_line=reporter.build_line)
    except RegistryError as exc:
        log.warning("warning: %s; the image is built and verified, only its build cache is missing there "
                    "(fix: %s)", exc.message, exc.fix)


@contextmanager
def _build_request(project: Project, plan: BuildPlan, *, no_cache: bool,
                   cache: CacheOptions) -> Iterator[docker.BuildRequest]:
    """The build of ``plan``, its context in a scratch directory that lives as long
    as the block (the cache export after verification builds from it again).
    Only exports that are part of the image run with the build itself."""
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
        shutil.copy2(uv_bin_for(plan.spec.platform, plan.spec.uv_version, host=host_platform()), uv_ctx / "uv")
        # A fixed time: the named context, and so BuildKit's cache key, is the same on every machine.
        os.utime(uv_ctx / "uv", (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
        ca_ctx = tmpdir / "ca"
        ca_ctx.mkdir()
        ca = plan.spec.ca_bundle  # this machine's proxy CA; never hashed
        (ca_ctx / CA_FILE).write_bytes(bundle_for_build(ca) if ca else b"")
        dockerfile = tmpdir / "Dockerfile"
        dockerfile.write_text(render(plan), encoding="utf-8")
        yield docker.BuildRequest(
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
            cache_to=cache.with_image,
            compression=plan.spec.compression,
            compression_level=plan.spec.compression_level,
        )
