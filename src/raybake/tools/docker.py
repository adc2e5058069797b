"""Docker and BuildKit, through python-on-whales. Nothing here runs at import.

Every call maps python-on-whales' errors to raybake's typed errors with a fix."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from raybake.errors import BuildError, EngineError, RegistryError
from raybake.tools.run import run

log = logging.getLogger("raybake.docker")

ENGINE_FIX = ("start the Docker daemon (on this project's test machines: `bash buildkit/engine-up`; "
              "elsewhere: `sudo systemctl start docker`) and check `docker info`")
BUILDX_FIX = "install the buildx plugin (Debian: `apt-get install docker-buildx`; see buildkit/engine-up)"


@cache
def _client():
    from python_on_whales import DockerClient  # imported lazily: the CLI stays fast

    return DockerClient()


def _docker_exception() -> type[Exception]:
    from python_on_whales.exceptions import DockerException

    return DockerException


def _mapped(exc: Exception) -> Exception | None:
    """The typed raybake error for an engine-level failure, or None."""
    from python_on_whales.client_config import ClientNotFoundError

    if isinstance(exc, ClientNotFoundError):
        return EngineError("the docker client is not installed", fix=ENGINE_FIX)
    text = f"{getattr(exc, 'stderr', '') or ''}{getattr(exc, 'stdout', '') or ''}"
    if "Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text:
        return EngineError("the Docker daemon is not reachable", fix=ENGINE_FIX)
    if "buildx" in text and ("is not a docker command" in text or "component is missing" in text):
        return EngineError("Docker's buildx plugin (BuildKit) is missing", fix=BUILDX_FIX)
    return None


def _call(fn, *args, **kwargs):
    """Call python-on-whales; engine-level failures become EngineError."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        mapped = _mapped(exc)
        if mapped is not None:
            raise mapped from None
        raise


def check_engine() -> None:
    """Raise EngineError unless a daemon with buildx answers."""
    client = _client()
    _call(client.info)
    if not _call(client.buildx.is_installed):
        raise EngineError("Docker's buildx plugin (BuildKit) is missing", fix=BUILDX_FIX)


# The two existence queries run on every `raybake build`, including the
# up-to-date path whose budget is 0.5 s; importing python-on-whales alone takes
# about 0.8 s here, so these two ask the docker CLI directly.
def _docker_query(args: list[str]) -> tuple[int, str]:
    proc = run(["docker", *args], check=False, timeout=60)
    text = (proc.stderr or proc.stdout).strip()
    if proc.returncode != 0 and ("Cannot connect to the Docker daemon" in text
                                 or "Is the docker daemon running" in text):
        raise EngineError("the Docker daemon is not reachable", fix=ENGINE_FIX)
    return proc.returncode, proc.stdout.strip() if proc.returncode == 0 else text


def local_image_id(reference: str) -> str | None:
    """The image ID for ``reference`` in the local store, or None."""
    code, text = _docker_query(["image", "inspect", "--format", "{{.Id}}", reference])
    if code == 0:
        return text
    if "No such image" in text or "No such object" in text:
        return None
    raise EngineError(f"cannot inspect {reference}: {text}", fix=ENGINE_FIX)


def registry_digest(reference: str) -> str | None:
    """The manifest digest (``sha256:...``) of ``reference`` in its registry, None when absent.

    Anything other than a clear "not found" is an error: raybake never assumes
    an image exists (or not) because the registry could not be asked."""
    # `docker manifest inspect` misses OCI manifests on plain-HTTP registries.
    code, text = _docker_query(["buildx", "imagetools", "inspect", "--format", "{{json .Manifest.Digest}}",
                                reference])
    if code == 0:
        return json.loads(text)
    if "no such manifest" in text or "manifest unknown" in text or ": not found" in text:
        return None
    if "unauthorized" in text.lower() or "denied" in text.lower():
        raise RegistryError(f"the registry refused access to {reference}: {text}",
                            fix="log in with `docker login <registry>` or fix the credentials")
    raise RegistryError(f"cannot tell whether {reference} exists: the registry did not answer ({text})",
                        fix="check the registry address in `repository` (or RAYBAKE_REPOSITORY) "
                            "and that the registry is up")


def registry_has(reference: str) -> bool:
    return registry_digest(reference) is not None


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


def build_image(req: BuildRequest, on_line: Callable[[str], None]) -> str:
    """Build and load into the local store, untagged; return the image ID.

    Loaded directly (no OCI archive, no rewrite-timestamp): only layers that
    changed are compressed and stored again. The dependency steps set their
    own file times (raybake.dockerfile), which keeps the layers reproducible."""
    docker_exc = _docker_exception()
    tail: list[str] = []  # the last lines, for the error message
    try:
        logs: Iterable[str] = _call(
            _client().buildx.build,
            req.context,
            file=req.dockerfile,
            build_contexts={k: str(v) for k, v in req.build_contexts.items()},
            build_args=dict(req.build_args),
            secrets=list(req.secrets),
            network=None if req.network == "default" else req.network,
            platforms=[req.platform],
            load=True,
            metadata_file=req.metadata_file,
            provenance=False,
            cache=req.cache,
            progress="plain",
            stream_logs=True,
        )
        for line in logs:
            line = line.rstrip("\n")
            tail = (tail + [line])[-200:]
            on_line(line)
    except docker_exc as exc:
        mapped = _mapped(exc)
        if mapped is not None:
            raise mapped from None
        detail = _failure_detail(tail) or (exc.stderr or "").strip()
        raise BuildError(f"the image build failed:\n{detail}", fix=_build_fix(detail)) from None
    try:
        return json.loads(req.metadata_file.read_text())["containerimage.digest"]
    except (OSError, ValueError, KeyError) as exc:
        raise BuildError(f"buildx reported no image digest ({exc})",
                         fix="upgrade docker buildx (0.10 or newer)") from None


_STEP_OUTPUT = re.compile(r"^#\d+ \d+\.\d+ (.*)$")


def _failure_detail(lines: list[str]) -> str:
    """What the failing step printed (uv's own message), then BuildKit's ERROR line."""
    step = [m.group(1) for line in lines if (m := _STEP_OUTPUT.match(line))]
    errors = [line for line in lines if line.startswith("ERROR")]
    return "\n".join([*step[-15:], *errors[-2:]]).strip()


def _build_fix(detail: str) -> str:
    if "network bridge not found" in detail:
        return "this daemon has no bridge network: set `network: host` in the spec or RAYBAKE_NETWORK=host"
    if "pull access denied" in detail or "failed to resolve source metadata" in detail or \
            "failed to do request" in detail and "FROM" in detail:
        return ("the base image is neither local nor pullable: `docker pull` it, `docker load` it, "
                "or set base_image (RAYBAKE_BASE_IMAGE) to an image in `docker images`")
    if "certificate" in detail.lower() or "tls" in detail.lower():
        return "HTTPS goes through a proxy: set ca_bundle (or RAYBAKE_CA_BUNDLE) to its CA bundle"
    if "Failed to fetch" in detail or "error sending request" in detail or "dns error" in detail:
        return "the package index is unreachable from the build: check network/proxy settings and the index URL"
    return "read uv's or the step's output above; fix the spec or the lock and build again"


def tag(image_id: str, reference: str) -> None:
    _call(_client().image.tag, image_id, reference)


def remove_image(reference: str) -> None:
    """Remove a tag or an untagged image; best effort (it may be in use)."""
    try:
        _call(_client().image.remove, reference, force=False, prune=False)
    except _docker_exception():
        log.debug("could not remove %s", reference)


def push(reference: str) -> str:
    """Push and return the pushed manifest digest (``repo@sha256:...``)."""
    try:
        _call(_client().image.push, reference, quiet=True)
    except _docker_exception() as exc:
        err = (exc.stderr or exc.stdout or "").strip()
        raise RegistryError(f"pushing {reference} failed: {err}",
                            fix="check that the registry is up and `docker login` to it") from None
    return repo_digest(reference)


def repo_digest(reference: str) -> str | None:
    """``repository@sha256:...`` of a pushed image, from the local store's record."""
    image = _call(_client().image.inspect, reference)
    repository = reference.rsplit(":", 1)[0]
    for d in image.repo_digests or []:
        if d.startswith(repository + "@"):
            return d
    return None


def image_size(reference: str) -> int:
    return int(_call(_client().image.inspect, reference).size or 0)


def image_labels(reference: str) -> dict[str, str]:
    return dict(_call(_client().image.inspect, reference).config.labels or {})


def run_container(image: str, command: list[str], *, network: str = "none") -> tuple[int, str, str]:
    """Run ``command`` in a throwaway container; return (exit code, stdout, stderr)."""
    try:
        out = _call(_client().container.run, image, command[1:], entrypoint=command[0],
                    remove=True, networks=[network])
        return 0, out or "", ""
    except _docker_exception() as exc:
        return exc.return_code, exc.stdout or "", exc.stderr or ""


def run_detached(image: str, command: list[str], *, name: str, network: str = "host",
                 shm_size: str = "2g") -> str:
    """Start a long-running container; return its ID."""
    container = _call(_client().container.run, image, command[1:], entrypoint=command[0], detach=True,
                      name=name, networks=[network], shm_size=shm_size, remove=False)
    return container.id


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


def remove_container(container_id: str) -> None:
    """Stop and remove; best effort, used in cleanup paths."""
    try:
        _call(_client().container.remove, container_id, force=True, volumes=True)
    except _docker_exception():
        log.debug("could not remove container %s", container_id)
