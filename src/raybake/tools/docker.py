"""Docker and BuildKit: the docker CLI through raybake.tools.run, and
python-on-whales for the rest. Nothing here runs at import.

Every call maps the engine's errors to raybake's typed errors with a fix.
What must be bounded in time (registry queries, push, build) or stopped with
raybake (build, push, the verification container) goes through
raybake.tools.run, which runs each in a process group it ends itself."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from raybake.contract import LABEL_INPUT_HASH, LABEL_OWNER
from raybake.errors import (BuildError, EngineError, ImageVanished, InvalidReference, RegistryError,
                            ToolTimeout)
from raybake.reference import Reference
from raybake.settings import BUILD_TIMEOUT, DOCKER_TIMEOUT, PUSH_TIMEOUT, REGISTRY_TIMEOUT
from raybake.tools.docker_errors import DockerFailure, classify
from raybake.tools.run import run, stream

log = logging.getLogger("raybake.docker")

ENGINE_FIX = ("start the Docker daemon (`sudo systemctl start docker`, or `sudo dockerd &` without systemd; "
              "DOCKER_HOST when it listens elsewhere) and check `docker info`")
DENIED_FIX = ("the daemon runs, but this user may not use its socket: add the user to the docker group "
              "(`sudo usermod -aG docker $USER`, then log in again or run `newgrp docker`), or point DOCKER_HOST "
              "at a daemon this user may use (rootless Docker)")
BUILDX_FIX = ("install Docker's buildx plugin (Debian/Ubuntu: `apt-get install docker-buildx`, with Docker's own "
              "packages `docker-buildx-plugin`) and check `docker buildx version`")
REGISTRY_FIX = ("check the registry address in `repository` (or RAYBAKE_REPOSITORY) and that the registry is up; "
                f"a slow registry: raise {REGISTRY_TIMEOUT.variable}")


@cache
def _client():
    from python_on_whales import DockerClient  # imported lazily: the CLI stays fast

    return DockerClient()


def _docker_exception() -> type[Exception]:
    from python_on_whales.exceptions import DockerException

    return DockerException


def _engine_error(text: str) -> EngineError | InvalidReference | None:
    """The typed raybake error for what the docker CLI printed, when the engine
    (not the request) failed, or when a name was refused; else None."""
    kind, evidence = classify(text)
    if kind is DockerFailure.DAEMON_DOWN:
        return EngineError("the Docker daemon is not reachable", fix=ENGINE_FIX)
    if kind is DockerFailure.DAEMON_DENIED:
        return EngineError(f"this user may not use the Docker daemon: {evidence}", fix=DENIED_FIX)
    if kind is DockerFailure.BUILDX_MISSING:
        return EngineError("Docker's buildx plugin (BuildKit) is missing", fix=BUILDX_FIX)
    if kind is DockerFailure.BAD_NAME:
        return InvalidReference(f"Docker refuses the image name: {evidence}",
                                fix="image names are lowercase, the repository at most 255 characters and the "
                                    "tag at most 128: shorten `repository` (RAYBAKE_REPOSITORY) or the spec name")
    return None


def _mapped(exc: Exception) -> Exception | None:
    """The typed raybake error for a python-on-whales failure at the engine level, or None."""
    from python_on_whales.client_config import ClientNotFoundError

    if isinstance(exc, ClientNotFoundError):
        return EngineError("the docker client is not installed", fix=ENGINE_FIX)
    return _engine_error(f"{getattr(exc, 'stderr', '') or ''}{getattr(exc, 'stdout', '') or ''}")


def _call(fn, *args, **kwargs):
    """Call python-on-whales; engine-level failures become EngineError."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        mapped = _mapped(exc)
        if mapped is not None:
            raise mapped from None
        raise


# The existence queries run on every `raybake build`, including the up-to-date
# path whose budget is 0.5 s; importing python-on-whales alone takes about
# 0.8 s here, so they ask the docker CLI directly.
def _docker_query(args: list[str], *, timeout: float | None = None) -> tuple[int, str]:
    """(exit code, output) of a docker CLI call. ``timeout``: the caller's own
    bound (a registry query), whose ToolTimeout it handles; by default the
    daemon's, RAYBAKE_DOCKER_TIMEOUT, whose expiry is an EngineError."""
    limit = timeout or DOCKER_TIMEOUT.value()
    try:
        proc = run(["docker", *args], check=False, timeout=limit)
    except ToolTimeout:
        if timeout is not None:
            raise
        raise EngineError(f"the Docker daemon did not answer `docker {args[0]}` within {limit:.0f} s",
                          fix="check the daemon: `docker info` should answer at once; restart it "
                              "(`sudo systemctl restart docker`), and check that DOCKER_HOST or the docker "
                              f"context names it; for a slow daemon raise "
                              f"{DOCKER_TIMEOUT.variable}") from None
    text = (proc.stderr or proc.stdout).strip()
    if proc.returncode != 0 and (mapped := _engine_error(text)) is not None:
        raise mapped
    return proc.returncode, proc.stdout.strip() if proc.returncode == 0 else text


@dataclass(frozen=True)
class LocalImage:
    image_id: str
    size: int
    labels: Mapping[str, str]
    env: tuple[str, ...] = ()  # the image config's KEY=VALUE entries
    workdir: str = ""  # the image config's WorkingDir ("": /)
    architecture: str = ""

    @property
    def input_hash(self) -> str | None:
        return self.labels.get(LABEL_INPUT_HASH)


def local_image(reference: str) -> LocalImage | None:
    """What the local store holds under ``reference``, or None."""
    code, text = _docker_query(["image", "inspect", "--format",
                                '{"id": {{json .Id}}, "size": {{json .Size}}, "labels": {{json .Config.Labels}}, '
                                '"env": {{json .Config.Env}}, "workdir": {{json .Config.WorkingDir}}, '
                                '"architecture": {{json .Architecture}}}',
                                reference])
    if code == 0:
        data = json.loads(text)
        return LocalImage(data["id"], int(data["size"] or 0), dict(data["labels"] or {}), tuple(data["env"] or ()),
                          data["workdir"] or "", data["architecture"] or "")
    if "No such image" in text or "No such object" in text:
        return None
    raise EngineError(f"cannot inspect {reference}: {text}", fix=ENGINE_FIX)


def local_image_id(reference: str) -> str | None:
    """The image ID for ``reference`` in the local store, or None."""
    image = local_image(reference)
    return image.image_id if image else None


@dataclass(frozen=True)
class RegistryImage:
    digest: str  # of the manifest (or index) the tag points to
    input_hash: str | None  # the label in that image's config


def registry_image(reference: str, platform: str | None = None) -> RegistryImage | None:
    """The manifest digest and the raybake input-hash label of ``reference`` in
    its registry (from the config blob of the manifest the tag points to; for
    an index, of ``platform``'s manifest); None when the tag is absent.

    Anything other than a clear "not found" is an error: raybake never assumes
    an image exists (or not) because the registry could not be asked."""
    data = _inspect_registry(reference)
    if data is None:
        return None
    return RegistryImage(data["digest"], _config_label(data.get("image"), platform, LABEL_INPUT_HASH))


def registry_label(reference: str, label: str) -> str | None:
    """A label of the image config ``reference`` names in its registry; None
    when the tag is absent or the config lacks the label."""
    data = _inspect_registry(reference)
    return None if data is None else _config_label(data.get("image"), None, label)


def _inspect_registry(reference: str) -> dict[str, Any] | None:
    """{"digest", "image"} of ``reference`` from imagetools; None when the tag is absent."""
    timeout = REGISTRY_TIMEOUT.value()
    # `docker manifest inspect` misses OCI manifests on plain-HTTP registries.
    try:
        code, text = _docker_query(["buildx", "imagetools", "inspect", "--format",
                                    '{"digest": {{json .Manifest.Digest}}, "image": {{json .Image}}}', reference],
                                   timeout=timeout)
    except ToolTimeout:
        raise RegistryError(f"cannot tell whether {reference} exists: the registry did not answer within "
                            f"{timeout:.0f} s", fix=REGISTRY_FIX) from None
    if code == 0:
        try:
            data = json.loads(text)
        except ValueError:
            raise RegistryError(f"the registry's description of {reference} is not readable: {text[:300]}",
                                fix=REGISTRY_FIX) from None
        return data
    kind, _ = classify(text)
    if kind is DockerFailure.NOT_FOUND:
        return None
    if kind is DockerFailure.UNAUTHORIZED:
        raise RegistryError(f"the registry refused access to {reference}: {text}",
                            fix="log in with `docker login <registry>` or fix the credentials")
    if kind in (DockerFailure.UNREACHABLE, DockerFailure.TLS):
        raise RegistryError(f"cannot tell whether {reference} exists: the registry did not answer ({text})",
                            fix=REGISTRY_FIX)
    raise RegistryError(f"cannot tell whether {reference} exists: the registry's reply makes no sense as a "
                        f"registry's ({text[:300]})",
                        fix="check that `repository` (or RAYBAKE_REPOSITORY) names a Docker registry, not "
                            "another web server or proxy page, and that the registry is healthy")


def _config_label(image: Any, platform: str | None, label: str) -> str | None:
    """A label of an image config from imagetools; an index gives one config per platform."""
    if isinstance(image, dict) and "config" not in image and "rootfs" not in image:
        image = image.get(platform) if platform else next(iter(image.values()), None)
    if not isinstance(image, dict):
        return None
    return ((image.get("config") or {}).get("Labels") or {}).get(label)


def registry_has(reference: str) -> bool:
    return registry_image(reference) is not None


@dataclass(frozen=True)
class BuildRequest:
    """Everything buildx needs; made from a BuildPlan by raybake.build."""

    context: Path
    dockerfile: Path
    build_contexts: Mapping[str, Path]
    build_args: Mapping[str, str]
    secrets: tuple[str, ...]
    network: str
    platform: str
    metadata_file: Path  # buildx writes the image's digest here
    cache: bool = True
    cache_from: tuple[str, ...] = ()  # buildx --cache-from values (raybake.buildcache)
    cache_to: tuple[str, ...] = ()  # buildx --cache-to values
    compression: str = "gzip"  # of the layers
    compression_level: int | None = None  # None: BuildKit's default


def build_argv(req: BuildRequest, *, cache_only: bool = False) -> list[str]:
    # --load writes Docker's gzip image at gzip's default level. Anything else goes
    # through the image exporter into the same store; zstd with OCI media types:
    # containerd cannot unpack Docker's zstd media type (seen with containerd 1.6).
    # zstd is forced so the base's gzip layers become zstd too; a gzip level is
    # not forced: the base's layers keep the blobs the registry serves.
    output = ["--load"]
    level = [] if req.compression_level is None else [f"compression-level={req.compression_level}"]
    if req.compression == "zstd":
        output = ["--output", ",".join(["type=image,compression=zstd", *level,
                                        "force-compression=true,oci-mediatypes=true"])]
    elif level:
        output = ["--output", ",".join(["type=image,compression=gzip", *level])]
    if cache_only:
        output = ["--output", "type=cacheonly"]
    argv = ["docker", "buildx", "build", "--file", str(req.dockerfile), "--platform", req.platform,
            *output, "--provenance=false", "--progress=plain", "--metadata-file", str(req.metadata_file)]
    for name, path in req.build_contexts.items():
        argv += ["--build-context", f"{name}={path}"]
    for name, value in req.build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    for secret in req.secrets:
        argv += ["--secret", secret]
    if req.network != "default":
        argv += ["--network", req.network]
    if not req.cache:
        argv.append("--no-cache")
    for value in req.cache_from:
        argv += ["--cache-from", value]
    for value in req.cache_to:
        argv += ["--cache-to", value]
    return [*argv, str(req.context)]


def build_image(req: BuildRequest, on_line: Callable[[str], None]) -> str:
    """Build and load into the local store, untagged; return the image ID.

    Loaded directly (no OCI archive, no rewrite-timestamp): only layers that
    changed are compressed and stored again. The dependency steps set their
    own file times (raybake.dockerfile), which keeps the layers reproducible.
    Bounded by RAYBAKE_BUILD_TIMEOUT; stopped with raybake (raybake.tools.run)."""
    tail: list[str] = []  # the last lines, for the error message
    missing_cache = MissingCacheLines()

    def show(lines: list[str]) -> None:
        for text in lines:
            tail.append(text)
            del tail[:-200]
            on_line(text)

    timeout = BUILD_TIMEOUT.value()
    try:
        code = stream(build_argv(req), lambda text: show(missing_cache.filter(text)), timeout=timeout)
        show(missing_cache.flush())
    except ToolTimeout:
        raise BuildError(f"the image build did not finish within {timeout:.0f} s and was stopped:\n"
                         f"{_failure_detail(tail) or chr(10).join(tail[-5:])}",
                         fix=f"a download, the base image pull or a cache export stalled: check network/proxy "
                             f"settings and the registry, or raise "
                             f"{BUILD_TIMEOUT.variable} for a build that needs longer") from None
    if code != 0:
        mapped = _engine_error("\n".join(tail))
        if mapped is not None:
            raise mapped
        # Builds are reproducible: an identical build that finished first (another
        # raybake, another repository) already stored this very image.
        if (same := _ALREADY_STORED.search("\n".join(tail))) and local_image_id(same.group(1)):
            return same.group(1)
        detail = _failure_detail(tail) or "\n".join(tail[-15:])
        raise BuildError(f"the image build failed:\n{detail}", fix=_build_fix(detail))
    try:
        return json.loads(req.metadata_file.read_text())["containerimage.digest"]
    except (OSError, ValueError, KeyError) as exc:
        raise BuildError(f"buildx reported no image digest ({exc})",
                         fix="upgrade docker buildx (0.10 or newer)") from None


def export_cache(req: BuildRequest, on_line: Callable[[str], None]) -> None:
    """Export the build cache of the image just built from ``req`` to ``req.cache_to``.

    The same build again, with no image output: every step comes from the local
    BuildKit cache, so nothing is built, only the cache is written. It sends
    layers to a registry like a push, so it is bounded by RAYBAKE_PUSH_TIMEOUT,
    not the build's hour. Raises RegistryError when it fails or stalls."""
    timeout = PUSH_TIMEOUT.value()
    tail: list[str] = []

    def line(text: str) -> None:
        tail.append(text)
        del tail[:-50]
        on_line(text)

    where = ", ".join(req.cache_to)
    try:
        code = stream(build_argv(replace(req, cache=True, cache_from=()), cache_only=True), line,
                      timeout=timeout)
    except ToolTimeout:
        raise RegistryError(f"exporting the build cache to {where} did not finish within {timeout:.0f} s "
                            "and was stopped", fix=f"check the cache's registry; on a slow link raise "
                                                   f"{PUSH_TIMEOUT.variable}") from None
    if code != 0:
        detail = "\n".join(line for line in tail if line.startswith("ERROR")) or "\n".join(tail[-5:])
        raise RegistryError(f"exporting the build cache to {where} failed:\n{detail}",
                            fix="check the cache's registry (`docker login` to it) or the cache_to setting")


class MissingCacheLines:
    """BuildKit's plain log with a registry cache that does not exist yet told as
    what it is. BuildKit reports it as an ERROR (and again in a ``------`` block
    at the end) although the build goes on and succeeds: every first build of a
    repository meets it for its default cache, REPOSITORY:buildcache-SPEC."""

    _MISSING = re.compile(r"^(#\d+) ERROR: failed to configure registry cache importer: (\S+): not found$")

    def __init__(self) -> None:
        self._missing: set[str] = set()  # caches found missing
        self._block: list[str] | None = None  # a ------ block, held until it ends

    def filter(self, line: str) -> list[str]:
        """The lines to show for ``line`` (none while a block is held)."""
        if self._block is not None:
            self._block.append(line)
            if line != "------":
                return []
            block, self._block = self._block, None
            header = block[1] if len(block) > 2 else ""
            name = header.removeprefix(" > importing cache manifest from ").removesuffix(":")
            return [] if header != name and name in self._missing else block
        if line == "------":
            self._block = [line]
            return []
        if m := self._MISSING.match(line):
            self._missing.add(m.group(2))
            return [f"{m.group(1)} no build cache at {m.group(2)} yet: this build goes on without it "
                    "(`raybake build --push` writes it)"]
        return [line]

    def flush(self) -> list[str]:
        block, self._block = self._block or [], None
        return block


_ALREADY_STORED = re.compile(r'image "moby-dangling@(sha256:[0-9a-f]{64})": already exists')
_STEP_OUTPUT = re.compile(r"^#\d+ \d+\.\d+ (.*)$")


def _failure_detail(lines: list[str]) -> str:
    """What the failing step printed (uv's own message), then BuildKit's ERROR line."""
    step = [m.group(1) for line in lines if (m := _STEP_OUTPUT.match(line))]
    errors = [line for line in lines if line.startswith("ERROR")]
    return "\n".join([*step[-15:], *errors[-2:]]).strip()


_BUILD_FIXES = {
    DockerFailure.NO_BRIDGE: "this daemon has no bridge network: set `network: host` in the spec or "
                             "RAYBAKE_NETWORK=host",
    DockerFailure.BASE_UNAVAILABLE: "the base image is neither local nor pullable: `docker pull` it, `docker load` "
                                    "it, or set base_image (RAYBAKE_BASE_IMAGE) to an image in `docker images`",
    DockerFailure.UNAUTHORIZED: "a registry or index refused the credentials: `docker login` to the base image's "
                                "registry; for a private package index, pass its credentials with index_secrets",
    DockerFailure.TLS: "HTTPS goes through a proxy: set ca_bundle (or RAYBAKE_CA_BUNDLE) to its CA bundle",
    DockerFailure.NO_BUILD: "a step that holds index_secrets builds no source distribution (git source, sdist): "
                            "its build backend could read the secrets. Use a wheel of it (publish one to the "
                            "index), or set `build_with_secrets: true` in the spec if you trust every backend "
                            "that step builds with the secrets",
    DockerFailure.INDEX_UNREACHABLE: "the package index is unreachable from the build: check network/proxy "
                                     "settings and the index URL",
}


def _build_fix(detail: str) -> str:
    return _BUILD_FIXES.get(classify(detail)[0],
                            "read uv's or the step's output above; fix the spec or the lock and build again")


def tag(image_id: str, reference: str) -> None:
    code, text = _docker_query(["tag", image_id, reference])
    if code != 0 and "No such image" in text:
        raise ImageVanished(f"cannot tag {image_id} as {reference}: the image was removed after it was built "
                            "(`docker image rm`/`prune`, or the clean-up of an identical image that another "
                            "build tagged: tagging an untagged image takes it over)",
                            fix="build again; if it keeps vanishing, stop what removes images on this engine "
                                "while raybake builds")
    if code != 0:
        raise EngineError(f"cannot tag {image_id} as {reference}: {text}", fix=ENGINE_FIX)


def remove_image(reference: str) -> None:
    """Remove a tag or an untagged image; best effort (it may be in use). Used in cleanup paths."""
    proc = run(["docker", "image", "rm", reference], check=False, timeout=60)
    if proc.returncode != 0:
        log.debug("could not remove %s: %s", reference, proc.stderr.strip())


def remove_untagged_image(image_id: str) -> None:
    """Remove the image ``image_id`` unless a tag refers to it; best effort, for cleanup paths.
    (Removed by ID, a tagged image would go with every tag it has.)"""
    code, text = _docker_query(["image", "inspect", "--format", "{{json .RepoTags}}", image_id])
    if code != 0:
        return  # gone already
    if json.loads(text or "null"):
        log.debug("kept %s: tagged %s", image_id, text)
        return
    remove_image(image_id)


def image_ids(label: str) -> frozenset[str]:
    """The IDs of the local images, tagged or not, carrying ``label`` (NAME=VALUE)."""
    code, text = _docker_query(["image", "ls", "--all", "--quiet", "--no-trunc", "--filter", f"label={label}"])
    if code != 0:
        raise EngineError(f"cannot list the local images: {text}", fix=ENGINE_FIX)
    return frozenset(text.split())


_PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def push(reference: str) -> str:
    """Push and return the pushed manifest digest (``repo@sha256:...``), as the
    push itself reports it: the digest of exactly the image pushed.

    Bounded by RAYBAKE_PUSH_TIMEOUT: a registry that stalls ends the push with
    an error, and the image stays tagged locally."""
    timeout = PUSH_TIMEOUT.value()
    retry = "run the same `raybake build --push` again: the image stays tagged here, so it only pushes"
    try:
        proc = run(["docker", "push", reference], check=False, timeout=timeout)
    except ToolTimeout:
        raise RegistryError(f"pushing {reference} did not finish within {timeout:.0f} s (the registry stalled "
                            "or the link is too slow) and was stopped",
                            fix=f"check the registry, then {retry}; for a large image on a slow link raise "
                                f"{PUSH_TIMEOUT.variable}") from None
    text = f"{proc.stdout}\n{proc.stderr}".strip()
    if proc.returncode != 0:
        if (mapped := _engine_error(text)) is not None:
            raise mapped
        raise RegistryError(f"pushing {reference} failed: {text[-1500:]}",
                            fix=f"check that the registry is up and `docker login` to it, then {retry}")
    found = _PUSHED_DIGEST.findall(proc.stdout)
    if not found:
        raise RegistryError(f"pushing {reference} reported no digest:\n{text[-600:]}",
                            fix="upgrade the docker CLI")
    return str(Reference.parse(reference).with_digest(found[-1]))


def push_labelled(reference: str, labels: Mapping[str, str], payload: bytes, context: Path) -> str:
    """Push a one-file image (``payload`` as /payload, FROM scratch) whose
    config carries ``labels``, as ``reference``; return its digest reference.
    ``context``: an empty directory for the build. Nothing stays in the local store."""
    (context / "payload").write_bytes(payload)
    label_args = " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items())
    (context / "Dockerfile").write_text(f"FROM scratch\nCOPY payload /payload\nLABEL {label_args}\n")
    proc = run(["docker", "buildx", "build", "--quiet", "--load", "--tag", reference, str(context)], check=False)
    if proc.returncode != 0:
        raise RegistryError(f"cannot make {reference}: {(proc.stderr or proc.stdout).strip()[-600:]}",
                            fix="check the Docker engine, then run the same `raybake build --push` again")
    try:
        return push(reference)
    finally:
        remove_image(reference)


def image_size(reference: str) -> int | None:
    image = local_image(reference)
    return image.size if image else None


def pull(reference: str) -> str:
    """Pull an image that is not in the local store; return its ID. Bounded by RAYBAKE_BUILD_TIMEOUT."""
    timeout = BUILD_TIMEOUT.value()
    try:
        proc = run(["docker", "pull", "--quiet", reference], check=False, timeout=timeout)
    except ToolTimeout:
        raise EngineError(f"pulling {reference} did not finish within {timeout:.0f} s and was stopped",
                          fix=f"check the network/proxy settings, or raise {BUILD_TIMEOUT.variable}") from None
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        if (mapped := _engine_error(text)) is not None:
            raise mapped
        raise EngineError(f"the image {reference} is not in the local image store and could not be pulled:\n"
                          f"{text[-600:]}",
                          fix=f"`docker pull {reference}` (or `docker load` it), or name an image you have "
                              "(base_image in the spec, or RAYBAKE_BASE_IMAGE)")
    return local_image_id(reference) or reference


def base_digest(reference: str) -> str:
    """The digest a build here from ``reference`` starts from: the local store's
    image (with the containerd image store its ID is the manifest or index digest
    a registry serves), else its registry's, without pulling."""
    if (image_id := local_image_id(reference)) is not None:
        return image_id
    try:
        remote = registry_image(reference)
    except RegistryError as exc:
        raise RegistryError(f"cannot resolve the base image {reference} to a digest: it is not in the local "
                            f"image store, and {exc.message.split(': ', 1)[-1]}",
                            fix=f"`docker pull {reference}` (or `docker load` it); or set base_image "
                                "(RAYBAKE_BASE_IMAGE) to an image you have, or name it by digest "
                                "(NAME@sha256:...)") from None
    if remote is None:
        raise EngineError(f"the base image {reference} is neither in the local image store nor in its registry",
                          fix=f"check the name, then `docker pull {reference}` (or `docker load` it); or set "
                              "base_image (RAYBAKE_BASE_IMAGE) to an image in `docker images`")
    return remote.digest


def image_labels(reference: str) -> dict[str, str]:
    image = local_image(reference)
    if image is None:
        raise EngineError(f"there is no image {reference} in the local image store",
                          fix=f"build it (`raybake build`) or pull it (`docker pull {reference}`)")
    return dict(image.labels)


def builder_platforms() -> tuple[str, ...]:
    """The platforms the default builder can run steps for (emulation included)."""
    code, text = _docker_query(["buildx", "inspect"])
    if code != 0:
        raise EngineError(f"cannot ask buildx which platforms it builds: {text}", fix=BUILDX_FIX)
    for line in text.splitlines():
        if line.strip().startswith("Platforms:"):
            return tuple(p.strip().rstrip("*") for p in line.split(":", 1)[1].split(",") if p.strip())
    return ()


def run_streaming(image: str, command: list[str], *, on_line: Callable[[str], None], network: str = "host",
                  mounts: tuple[tuple[Path, str], ...] = ()) -> int:
    """Run ``command`` in a throwaway container, passing each output line to
    ``on_line`` as it comes; return its exit code. Removed when raybake stops early."""
    name = f"raybake-run-{uuid.uuid4().hex[:12]}"
    try:
        return stream(["docker", "run", "--rm", "--name", name, "--label", f"{LABEL_OWNER}={_owner()}",
                       "--network", network,
                       *(f"--volume={h}:{c}:ro" for h, c in mounts), "--entrypoint", command[0], image,
                       *command[1:]], on_line)
    except BaseException:
        remove_container(name)
        raise


def run_container(image: str, command: list[str], *, network: str = "none",
                  mounts: tuple[tuple[Path, str], ...] = (), workdir: str | None = None,
                  env: Mapping[str, str] | None = None, user: str | None = None) -> tuple[int, str, str]:
    """Run ``command`` in a throwaway container; return (exit code, stdout, stderr).
    ``mounts``: (host path, container path) pairs, read-only; ``user``: instead of the image's.

    A named container, removed with force when raybake stops early (Ctrl-C,
    SIGTERM): it must not keep running, nor keep its image in use. It goes
    before the docker CLI is stopped, which otherwise waits for it."""
    name = f"raybake-run-{uuid.uuid4().hex[:12]}"
    options = [f"--volume={h}:{c}:ro" for h, c in mounts]
    options += [f"--workdir={workdir}"] if workdir else []
    options += [f"--env={k}={v}" for k, v in (env or {}).items()]
    options += [f"--user={user}"] if user else []
    proc = run(["docker", "run", "--rm", "--name", name, "--label", f"{LABEL_OWNER}={_owner()}",
                "--network", network, *options,
                "--entrypoint", command[0], image, *command[1:]], check=False,
               on_abort=lambda: remove_container(name))
    if proc.returncode == 125 and (mapped := _engine_error(proc.stderr)) is not None:
        raise mapped
    return proc.returncode, proc.stdout.removesuffix("\n"), proc.stderr


def run_detached(image: str, command: list[str], *, name: str, network: str = "host",
                 shm_size: str = "2g", env: Mapping[str, str] | None = None,
                 mounts: tuple[tuple[Path, str], ...] = ()) -> str:
    """Start a long-running container; return its ID. ``mounts``: (host path,
    container path) pairs, read-only."""
    container = _call(_client().container.run, image, command[1:], entrypoint=command[0], detach=True,
                      name=name, networks=[network], shm_size=shm_size, remove=False, envs=dict(env or {}),
                      volumes=[(str(h), c, "ro") for h, c in mounts], labels={LABEL_OWNER: _owner()})
    return container.id


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None when there is no such process:
    with the PID it names one process, never a later one that reuses the PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _owner_gone(owner: str) -> bool:
    """Has the raybake named by a LABEL_OWNER value ended? Only a process of this host can tell."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit() or parts[2] == "None":
        return False
    return _start_time(int(parts[1])) != parts[2]


def remove_orphaned_containers() -> list[str]:
    """Remove the containers raybake started on this host for a raybake that
    has ended without removing them (SIGKILL, a crash of the machine's
    session): a local Ray head, its job client. Returns their IDs."""
    code, text = _docker_query(["ps", "--all", "--filter", f"label={LABEL_OWNER}",
                                "--format", f'{{{{.ID}}}} {{{{.Label "{LABEL_OWNER}"}}}}'])
    if code != 0:
        raise EngineError(f"cannot list the containers: {text}", fix=ENGINE_FIX)
    orphans = [cid for cid, _, owner in (line.partition(" ") for line in text.splitlines()) if _owner_gone(owner)]
    for cid in orphans:
        log.debug("removing container %s, left by a raybake that was killed", cid)
        remove_container(cid)
    return orphans


def container_running(container_id: str) -> bool:
    try:
        return bool(_call(_client().container.inspect, container_id).state.running)
    except _docker_exception():
        return False


def container_logs(container_id: str, tail: int = 40) -> str:
    try:
        return _call(_client().container.logs, container_id, tail=tail)
    except _docker_exception():
        return ""


def remove_container(container: str) -> None:
    """Stop and remove (by ID or name); best effort, used in cleanup paths."""
    proc = run(["docker", "rm", "--force", "--volumes", container], check=False, timeout=60)
    if proc.returncode != 0:
        log.debug("could not remove container %s: %s", container, proc.stderr.strip())
