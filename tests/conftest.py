"""Shared fixtures. The engine fixtures use the real Docker engine, registry and
base image that `bash buildkit/engine-up` brings up; nothing is mocked.

Under CI (CI set) a test that needs the engine fails when it is down; elsewhere
it is skipped with the command that starts it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import (HANDED_OUT, docker, input_hash, named_after, new_repository, raybake, registry_answers,
                     registry_catalog, registry_repositories, registry_tags, remove_repository)

from raybake.contract import LABEL_INPUT_HASH
from raybake.trust import attach_record

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = REPO / "examples" / "ray-app"
ENGINE_UP = REPO / "buildkit" / "engine-up"


@dataclass(frozen=True)
class Engine:
    registry: str  # host:port on 127.0.0.1
    base_image: str
    nonroot_base_image: str  # runs as `ray` (uid 1000), like rayproject/ray
    trixie_base_image: str  # Debian trixie: Python 3.13

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for raybake runs against this engine."""
        return {**os.environ, "RAYBAKE_BASE_IMAGE": self.base_image, "RAYBAKE_NETWORK": "host", **extra}


def _unavailable(reason: str):
    message = f"the build engine is not available: {reason}\nstart it with: bash buildkit/engine-up"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


ENGINE_MARKERS = ("engine", "registry", "ray")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n 2 --dist loadgroup` (make test) every test that uses the
    engine, the registry or Ray runs on one worker, one after another, as they
    assume (one session registry, the leftover check, timed stalls); the other
    tests run beside them a module at a time, so that no worker sets up a
    module's fixtures (pre-commit's hook environment) a second time."""
    for item in items:
        if any(item.get_closest_marker(name) for name in ENGINE_MARKERS) or "engine" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("engine"))
        else:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session")
def engine(tmp_path_factory) -> Iterator[Engine]:
    """The shared engine and base images, with a registry of this session's own
    (its storage under pytest's temp directory, gone when the session ends).
    At the end, fails naming any image, container or registry repository a test left."""
    global _session_registry
    proc = subprocess.run(["bash", str(ENGINE_UP), "--check"], capture_output=True, text=True)
    if proc.returncode != 0:
        _unavailable(proc.stderr.strip())
    state = Path(os.environ.get("RAYBAKE_ENGINE_STATE", "/var/tmp/raybake-engine")) / "engine.env"
    values = dict(line.split("=", 1) for line in state.read_text().split() if "=" in line)
    storage = tmp_path_factory.mktemp("registry")
    with _registry(storage) as registry:
        _session_registry = registry
        yield Engine(registry=registry, base_image=values["RAYBAKE_TEST_BASE_IMAGE"],
                     nonroot_base_image=values["RAYBAKE_TEST_NONROOT_BASE_IMAGE"],
                     trixie_base_image=values["RAYBAKE_TEST_TRIXIE_BASE_IMAGE"])
        _session_registry = None
        left = _leftovers(registry, values.get("RAYBAKE_TEST_REGISTRY"))
    shutil.rmtree(storage, ignore_errors=True)
    if left:
        pytest.fail("the tests left these behind (remove them in the test's finally/fixture):\n  "
                    + "\n  ".join(left), pytrace=False)


_session_registry: str | None = None  # host:port of the session's registry, while it runs


@contextmanager
def _registry(storage: Path) -> Iterator[str]:
    """A registry (Debian's docker-registry, as engine-up uses) on a free 127.0.0.1 port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    config = storage / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {storage / 'data'}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: {address}\nlog:\n  level: warn\n")
    server = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                              stderr=open(storage / "registry.log", "wb"), start_new_session=True)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.1)
        else:
            _unavailable(f"the test registry did not answer on {address}")
        if server.poll() is not None:
            _unavailable(f"the test registry stopped: {(storage / 'registry.log').read_text()[-500:]}")
        yield address
    finally:
        server.terminate()
        server.wait(timeout=30)


def _leftovers(registry: str, shared_registry: str | None) -> list[str]:
    """Images and containers of the repositories handed out this session (or of
    the session's registry), registry repositories that still hold a tag, and any
    of this session's repositories in the shared registry (engine-up's, which tests never use)."""
    listed = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    left = [f"image {name}" for name in listed
            if name.startswith(f"{registry}/") or any(named_after(name, repo) for repo in HANDED_OUT)]
    ours = tuple(HANDED_OUT) + (f"{registry}/",)
    containers = docker("ps", "-a", "--format", "{{.Names}} {{.Image}}", check=False).stdout.splitlines()
    left += [f"container {line}" for line in containers if any(o in line.split(" ", 1)[-1] for o in ours)]
    left += [f"registry repository {registry}/{repo}" for repo in registry_repositories(registry)]
    if shared_registry and registry_answers(shared_registry):
        left += [f"registry repository {shared_registry}/{repo}" for repo in registry_catalog(shared_registry)
                 if any(named_after(repo, handed) for handed in HANDED_OUT) and registry_tags(shared_registry, repo)]
    return sorted(set(left))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """raybake's memo and lock files go to a per-session directory."""
    monkeypatch.setenv("RAYBAKE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "raybake-cache"))


@pytest.fixture
def copy_fixture(tmp_path):
    """Copy a fixture project (by name under tests/fixtures, or a path) to a temp dir."""

    def copy(name: str | Path) -> Path:
        src = Path(name) if isinstance(name, Path) else FIXTURES / name
        dest = tmp_path / src.name
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
        return dest

    return copy


@pytest.fixture
def unique_repo() -> Iterator[str]:
    """A repository nobody else uses: every test's build starts absent. Its
    images (under any registry host) and its repository in the session's
    registry are removed when the test ends."""
    repository = new_repository()
    yield repository
    remove_repository(repository, _session_registry)


@pytest.fixture(scope="session")
def repositories(engine) -> Iterator[Callable[[str], str]]:
    """For module- and session-scoped fixtures: ``repositories(kind)`` names a new
    repository; all of them are removed when the session ends (before the
    engine fixture's leftover check)."""
    made: list[str] = []

    def make(kind: str = "m") -> str:
        made.append(new_repository(kind))
        return made[-1]

    yield make
    for repository in made:
        remove_repository(repository, _session_registry)


@dataclass(frozen=True)
class BuiltProject:
    root: Path  # a copy of the fixture project; do not change it (other tests read it too)
    env: dict[str, str]  # for raybake runs against its repository
    reference: str  # REPOSITORY:TAG, built and verified


@pytest.fixture(scope="session")
def small_image(engine, repositories, tmp_path_factory) -> BuiltProject:
    """tests/fixtures/small built once for the session (in a repository of its
    own, removed at the end): for tests that only read a built image. A test
    that needs a cold build, or changes the project, builds its own."""
    root = tmp_path_factory.mktemp("small-image") / "small"
    shutil.copytree(FIXTURES / "small", root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    env = engine.env(RAYBAKE_REPOSITORY=repositories("small"))
    reference = raybake("build", "-C", str(root), env=env).stdout.split()[0]
    return BuiltProject(root, env, reference)


@dataclass(frozen=True)
class PushedProject:
    root: Path
    env: dict[str, str]  # for raybake runs: its repository is in the test registry
    reference: str  # REPOSITORY:TAG
    by_digest: str  # REPOSITORY@sha256:... as pushed: what configs for a cluster name


@pytest.fixture(scope="session")
def pushed_example(engine, repositories, tmp_path_factory) -> PushedProject:
    """A copy of the example whose image is in the test registry: a small stand-in
    with the plan's input-hash label and raybake's verification record for its
    digest (job configs only ask the registry for the digest, label and record),
    pushed once for the session."""
    root = tmp_path_factory.mktemp("pushed") / "ray-app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{repositories('p')}")
    env.pop("RAY_ADDRESS", None)
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    context = tmp_path_factory.mktemp("stand-in")
    (context / "marker").write_text(reference)
    (context / "Dockerfile").write_text(
        f'FROM scratch\nLABEL {LABEL_INPUT_HASH}="{input_hash(root, env)}"\nCOPY marker /marker\n')
    docker("buildx", "build", "--load", "-t", reference, str(context))
    try:
        pushed = re.search(r"digest: (sha256:[0-9a-f]{64})", docker("push", reference).stdout).group(1)
    finally:
        docker("image", "rm", reference, check=False)
    by_digest = f"{reference.rsplit(':', 1)[0]}@{pushed}"
    # What raybake pushes beside an image it verified: configs name only such a digest.
    attach_record(by_digest, input_hash(root, env), "default")
    return PushedProject(root, env, reference, by_digest)


@pytest.fixture(scope="session")
def ray_example(engine, repositories, tmp_path_factory) -> tuple[Path, dict[str, str], str, str]:
    """The example with boto3 added (a Ray node fetches s3:// working_dirs with
    it), built once for the session and pushed to the test registry, as a cluster
    pulls it: (project, environment, reference, build output). Tests that change
    the project copy it first (the source is not in the tag: the copy's image is
    this one). The session removes the repository and its images."""
    from raybake.tools.uv import uv_bin

    root = tmp_path_factory.mktemp("ray-example") / "ray-app"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    subprocess.run([str(uv_bin()), "add", "--no-sync", "--quiet", "boto3"], cwd=root, check=True, timeout=300)
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{repositories('k')}")
    env.pop("RAY_ADDRESS", None)
    proc = raybake("build", "--push", "-C", str(root), env=env, timeout=1200)
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    return root, env, reference, proc.stdout + proc.stderr


BUCKET = "raybake-wd"


@pytest.fixture(scope="session")
def s3():
    """An S3-compatible server (moto) on 127.0.0.1 with the bucket BUCKET: (the
    environment that points boto3 there, a boto3 client). Ray heads on the host
    network reach it too."""
    import boto3
    from moto.server import ThreadedMotoServer

    from raybake.localcluster import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield env, client
    finally:
        server.stop()
