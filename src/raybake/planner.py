"""The impure edge of planning: finds the facts planning needs outside the
project files, then hands them to the pure raybake.plan.

- The digest of each base image (hashed into the tag) when it is known without
  asking anyone: named in the spec, or recorded in raybake-pin.json
  (``known_base_digests``); ``resolve_base_digests`` asks the engine, for
  `raybake pin --update-bases` to record.
- `uv export` of the spec's selection, run once per build; the same text goes
  to verification.
- The interpreters of the base image, from one throwaway container, remembered
  by the base's image ID.

``identities_for`` needs only the first: `tag`, `pin` and job configs use it
alone, with no daemon and no network."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from raybake.dockerfile import template_digest
from raybake.errors import EngineError, ProjectError
from raybake.files import atomic_write
from raybake.lockfile import parse_lock
from raybake.paths import cache_dir
from raybake.plan import (
    BuildPlan,
    ImageIdentity,
    identify,
    local_package_args,
    pinned_digest,
    plan_build,
    resolve_python,
    uv_selection_args,
)
from raybake.project import Project
from raybake.sources import check_reachable, sdist_builds, target_markers, undeclared_indexes
from raybake.spec import ImageSpec, host_platform, load_specs, select
from raybake.tools.uv import (
    export_requirements,
    lock_check_args,
    lock_memo,
    lock_verdict,
    remember_lock_check,
    uv_bin_for,
)

# Every pythonX.Y a base image may carry, and its default python3.
_PYTHON_NAMES = ("python3", *(f"python3.{minor}" for minor in range(8, 16)))
# Runs as the base's own user: its name is the user raybake's image switches back to.
_BASE_FACTS = ("echo \"user $(id -un 2>/dev/null || id -u)\"; echo \"workdir $(pwd)\"; for n in " + " ".join(_PYTHON_NAMES)
               + "; do p=$(command -v $n) && "
               "\"$p\" -c 'import platform, sys; print(sys.argv[1], platform.python_version())' $n; done; true")


@dataclass(frozen=True)
class BaseFacts:
    pythons: dict[str, str]  # {command: X.Y.Z} of the Pythons on the base image's PATH
    user: str  # the user the base image runs as
    workdir: str = "/"  # its working directory (/home/ray in the Ray and Anyscale images)


def specs_for(project: Project, names: tuple[str, ...] = (), *, all_specs: bool = False,
              environ: Mapping[str, str] | None = None) -> tuple[ImageSpec, ...]:
    specs = load_specs(project, os.environ if environ is None else environ)
    return tuple(specs if all_specs else select(specs, names))


def identities_for(project: Project, names: tuple[str, ...] = (), *, all_specs: bool = False,
                   environ: Mapping[str, str] | None = None) -> tuple[ImageIdentity, ...]:
    """The chosen specs' identities, with the base digests known without asking
    anyone (no daemon, no network)."""
    chosen = specs_for(project, names, all_specs=all_specs, environ=environ)
    return identify_all(project, chosen, known_base_digests(chosen, recorded_bases(project.root)))


def identify_all(project: Project, specs: tuple[ImageSpec, ...],
                 bases: Mapping[str, str | None]) -> tuple[ImageIdentity, ...]:
    return tuple(identify(project, s, base_digest=bases.get(s.base_image), template_digest=template_digest())
                 for s in specs)


def recorded_bases(project_root: Path) -> dict[str, str]:
    """The base digests raybake-pin.json records; none without a pin."""
    from raybake.pinfile import read_pin

    pin = read_pin(project_root)
    return dict(pin.bases) if pin else {}


def known_base_digests(specs: Iterable[ImageSpec], recorded: Mapping[str, str]) -> dict[str, str | None]:
    """Each base image's digest as far as it is known without asking anyone: the
    one its name carries, else the one raybake-pin.json records, else None (the
    base is then hashed and built from by name)."""
    return {s.base_image: pinned_digest(s.base_image) or recorded.get(s.base_image) for s in specs}


def resolve_base_digests(base_images: Iterable[str]) -> dict[str, str]:
    """Each base image's digest on this machine (the local store's image, else
    its registry's), for ``raybake pin --update-bases`` to record. Names that
    carry their own digest are left out: nothing to record."""
    from raybake.tools import docker

    return {image: docker.base_digest(image) for image in sorted(set(base_images)) if not pinned_digest(image)}


def moved_base(identity: ImageIdentity) -> str | None:
    """A note when the local store holds another image under the base's name than
    the digest being built from (the tag moved since raybake-pin.json recorded it)."""
    from raybake.tools import docker

    if identity.base_digest is None or pinned_digest(identity.spec.base_image):
        return None
    here = docker.local_image_id(identity.spec.base_image)
    if here is None or here == identity.base_digest:
        return None
    return (f"{identity.spec.base_image} is now {here[:19]} here; building from {identity.base_digest[:19]}, "
            "the digest raybake-pin.json records (`raybake pin --update-bases` records the new one)")


def spec_requirements(project: Project, spec: ImageSpec) -> str:
    """`uv export` (with hashes) of what the spec installs, never the project's own packages.
    Run once per lock and selection in a process (`raybake submit` asks before and while building)."""
    args = (*local_package_args(project, verb="emit"), *uv_selection_args(project, spec))
    key = (str(project.root), hashlib.sha256(project.lock_bytes).hexdigest(), args)
    if key not in _exported:
        _exported[key] = export_requirements(project, args)
    return _exported[key]


_exported: dict[tuple[str, str, tuple[str, ...]], str] = {}


def ray_without_default(project: Project, spec_name: str, locked: Mapping[str, str | None]) -> ProjectError | None:
    """The error for an image with Ray but not Ray's `default` extra (None when
    it has both, or no Ray): a head then dies at start, since its dashboard and
    job server (job submission, KubeRay's and Anyscale's jobs) need that extra.
    ``locked`` is the spec's selection {name: version}."""
    if "ray" not in locked:
        return None
    ray = parse_lock(project.lock_bytes).package("ray")
    # uv records only the extras some dependent asked for.
    extras = dict(ray.optional_dependencies) if ray else {}
    if "default" in extras and all(d.name in locked for d in extras["default"]):
        return None
    wanted = ",".join(sorted({*extras, "default"}))  # the extras the project already has, and default
    return ProjectError(
        f"the image of spec '{spec_name}' has Ray without its `default` extra: a Ray head in it dies at start "
        "(its dashboard and job server, which job submission, KubeRay and Anyscale use, need that extra)",
        fix=f"`uv add 'ray[{wanted}]'` (or select the group or extra that has it in the spec), then rebuild")


def make_plan(project: Project, identity: ImageIdentity) -> BuildPlan:
    spec = identity.spec
    requirements = spec_requirements(project, spec)
    lock = parse_lock(project.lock_bytes, str(project.root / "uv.lock"))
    check_reachable(spec, lock, _selected(requirements, None))
    check_platform(spec.platform)
    base = base_facts(identity.base_reference)
    python = resolve_python(spec, project.requires_python, base.pythons)
    return plan_build(project, identity, requirements=requirements, lock=lock, python=python, user=base.user,
                      workdir=base.workdir)


def build_warnings(project: Project, recipe: BuildPlan, environ: Mapping[str, str]) -> list[str]:
    """What may fail the build of ``recipe``, told before it starts: index_secrets
    that are not set here, packages locked from an index the project no longer
    declares, packages uv must build from source in the image."""
    spec = recipe.spec
    lock = parse_lock(project.lock_bytes, str(project.root / "uv.lock"))
    warnings = []
    unset = [name for name in spec.index_secrets if not environ.get(name)]
    if unset:
        warnings.append(f"{', '.join(unset)} (index_secrets of {spec.source}) "
                        f"{'is' if len(unset) == 1 else 'are'} not set here: the build passes uv no such "
                        "credential, and an index that needs it refuses with 401/403")
    selected = _selected(recipe.requirements, None)
    if note := undeclared_indexes(project, lock, selected, environ):
        warnings.append(note)
    if note := sdist_builds(spec, lock, _selected(recipe.requirements, target_markers(spec.platform, recipe.python)),
                            recipe.python):
        warnings.append(note)
    return warnings


def _selected(requirements: str, markers: dict[str, str] | None) -> set[str]:
    from raybake.verify import locked_selection

    return set(locked_selection(requirements, markers))


def check_platform(platform: str) -> None:
    """Refuse, before anything is built, a platform this engine cannot run steps for."""
    from raybake.tools import docker

    platforms = docker.builder_platforms()
    if platforms and platform not in platforms:
        raise EngineError(
            f"this Docker engine cannot build for {platform}: its builder runs {', '.join(platforms)}",
            fix=f"build on a {platform} machine, or let this one emulate it (QEMU binfmt: "
                "`docker run --privileged --rm tonistiigi/binfmt --install all`), or set platform to one it runs")


def base_facts(base_image: str) -> BaseFacts:
    """The base image's Pythons and user, from one throwaway container (remembered by image ID)."""
    from raybake.tools import docker

    image_id = docker.local_image_id(base_image) or _pull_base(base_image)
    memo = cache_dir() / "base-facts" / f"{image_id.replace(':', '-')}.json"
    if memo.is_file() and "workdir" in (known := json.loads(memo.read_text())):  # older memos lack it
        return BaseFacts(**known)
    code, out, err = docker.run_container(base_image, ["sh", "-c", _BASE_FACTS])
    if code != 0:
        raise EngineError(f"could not look for Python in the base image {base_image} (exit {code}):\n"
                          f"{(err or out).strip()[-600:]}",
                          fix="check that the base image has a shell (sh) and runs on this machine's platform")
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    facts = BaseFacts({k: v for k, v in lines.items() if k.startswith("python3")}, lines.get("user") or "root",
                      lines.get("workdir") or "/")
    if facts.pythons:  # an empty answer is not remembered: the next run asks again
        _remember(memo, {"pythons": facts.pythons, "user": facts.user, "workdir": facts.workdir})
    return facts


def _pull_base(base_image: str) -> str:
    """Pull a base that is not here; a base by digest that cannot be had may be
    one raybake-pin.json recorded before its tag moved: the fix says so."""
    from raybake.tools import docker

    try:
        return docker.pull(base_image)
    except EngineError as exc:
        if pinned_digest(base_image) is None:
            raise
        raise EngineError(exc.message, fix=f"{exc.fix}; when the digest is the one raybake-pin.json records for "
                          "a base tag that has moved since, `docker pull` the base, then "
                          "`raybake pin --update-bases` records the new one") from None


def _remember(path: Path, value: dict[str, object]) -> None:
    """Best effort: an unwritable cache only costs the next run a container."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(value, sort_keys=True).encode())
    except OSError:
        pass


def check_lock_in_base(project: Project, plan: BuildPlan) -> None:
    """`uv lock --check` with the base image's interpreter, for a machine that has
    none satisfying requires-python (e.g. a `.python-version` of 3.11.11 or
    requires-python >=3.12 on a 3.11 host). The project is mounted read-only;
    no network."""
    from raybake import contract
    from raybake.tools import docker

    memo = lock_memo(project)
    if memo.exists():
        return
    uv = "/run/raybake-uv"
    python = "python" + ".".join(plan.python.split(".")[:2])
    code, out, err = docker.run_container(
        plan.identity.base_reference, [uv, *lock_check_args(python)],
        mounts=((project.root, contract.PROJECT_DIR),
                (uv_bin_for(host_platform(), plan.spec.uv_version, host=host_platform()), uv)),
        workdir=contract.PROJECT_DIR,
        env={"UV_CACHE_DIR": "/tmp/raybake-uv-cache", "HOME": "/tmp"})
    lock_verdict(project, code, err or out, where=f"in the base image {plan.spec.base_image}")
    remember_lock_check(memo)
