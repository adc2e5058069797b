"""Where a build's BuildKit cache comes from and goes to (raybake.buildcache)."""

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import docker, raybake, registry_blob, registry_repositories, registry_tags

from raybake.buildcache import cache_options, default_cache_ref, normalize
from raybake.errors import SpecError
from raybake.spec import ImageSpec
from raybake.tools.uv import uv_bin


def spec(repository: str = "127.0.0.1:5000/team/app", **fields) -> ImageSpec:
    return ImageSpec(name="cpu", source="test", repository=repository, base_image="python:3.11-slim",
                     python=None, **fields)


def test_default_cache_lives_next_to_the_image_in_its_registry():
    assert default_cache_ref(spec()) == "127.0.0.1:5000/team/app:buildcache-cpu"
    assert default_cache_ref(spec("ghcr.io/org/app")) == "ghcr.io/org/app:buildcache-cpu"
    assert default_cache_ref(spec("team/app")) == "team/app:buildcache-cpu"  # Docker Hub is a registry too
    assert default_cache_ref(spec("app")) is None  # a local name: no shared cache


def test_default_imports_always_and_exports_only_with_push():
    ref = "127.0.0.1:5000/team/app:buildcache-cpu"
    assert cache_options(spec(), push=False).cache_from == (f"type=registry,ref={ref}",)
    assert cache_options(spec(), push=False).cache_to == ()
    assert cache_options(spec(), push=True).cache_to == (f"type=registry,ref={ref},mode=max",)
    local = cache_options(spec("app"), push=True)
    assert local.cache_from == () and local.cache_to == ()


def test_spec_and_cli_values_replace_the_default():
    own = spec(cache_from=("reg.example/cache:main",), cache_to=("type=inline",))
    options = cache_options(own, push=True)
    assert options.cache_from == ("type=registry,ref=reg.example/cache:main",)
    assert options.cache_to == ("type=inline",)
    assert cache_options(spec(cache_from=(), cache_to=()), push=True) == cache_options(spec("app"), push=True)
    cli = cache_options(own, push=False, cache_to=("type=registry,ref=r.io/c:x,mode=min",))
    assert cli.cache_to == ("type=registry,ref=r.io/c:x,mode=min",)  # an explicit mode is kept


def test_zstd_images_export_a_zstd_cache():
    options = cache_options(spec(compression="zstd"), push=True)
    assert options.cache_to[0].endswith("mode=max,compression=zstd,force-compression=true,oci-mediatypes=true")


def test_a_compression_level_reaches_the_exported_cache():
    options = cache_options(spec(compression_level=1), push=True)
    assert options.cache_to[0].endswith("mode=max,compression-level=1")
    assert "compression-level" not in normalize("type=registry,ref=r/c:t", export=True, compression="gzip")


def test_only_an_inline_cache_goes_with_the_build_the_rest_after_verification():
    """Exports that write somewhere of their own run after verification
    (raybake.build), so a rejected build's layers never leave the machine."""
    options = cache_options(spec(cache_to=("type=inline", "reg.example/cache:x", "type=local,dest=/c")),
                            push=True)
    assert options.with_image == ("type=inline",)
    assert options.after_verification == ("type=registry,ref=reg.example/cache:x,mode=max", "type=local,dest=/c")
    assert cache_options(spec(), push=True).with_image == ()


@pytest.mark.parametrize("value", ["type=nonsense,ref=x", "type="])
def test_unknown_cache_types_are_refused_with_the_forms_that_work(value):
    with pytest.raises(SpecError) as err:
        normalize(value, export=False)
    assert "type=registry,ref=" in err.value.fix


# --------------------------------------------------------------------------- on the real engine and registry

HEAVY = '\n[tool.raybake]\nheavy_packages = ["six"]\n'


def steps(output: str) -> dict[str, str]:
    """BuildKit's plain progress: step number -> its header line, with " RAN"
    appended when its command ran (its output lines carry a timestamp). A step
    taken from a cache never runs: BuildKit prints CACHED for it, or only the
    download and extraction of its layers when they come from a registry cache."""
    headers = dict(re.findall(r"^(#\d+) (\[.*)$", output, re.MULTILINE))
    for number in set(re.findall(r"^(#\d+) \d+\.\d+ ", output, re.MULTILINE)):
        if number in headers:
            headers[number] += " RAN"
    return headers


def manifest(reference: str) -> dict:
    return json.loads(docker("buildx", "imagetools", "inspect", "--raw", reference).stdout)


@contextmanager
def engine_of_its_own(base_image: str) -> Iterator[dict[str, str]]:
    """A throwaway dockerd with an empty image store and BuildKit cache, holding
    only ``base_image``; yields the environment that points the docker CLI at it.

    A fresh CI runner, without emptying the shared engine's cache that every other
    build on the machine uses: no BuildKit image can be had offline for `docker
    buildx create --driver docker-container`, so this is a second daemon with the
    flags buildkit/engine-up gives the shared one, and data, exec root, pid file
    and socket of its own under a new directory, removed with it. It reaches the
    registries on 127.0.0.1 as the shared engine does."""
    # Directly under the temp root, not pytest's deep tmp_path (deeper still under
    # xdist), and short names under it: the daemon's and containerd's socket paths
    # must stay under 104 bytes.
    home = Path(tempfile.mkdtemp(prefix="rb-engine-"))
    env = {**os.environ, "DOCKER_HOST": f"unix://{home}/docker.sock"}
    daemon = subprocess.Popen(
        ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", "--data-root", str(home / "d"),
         "--exec-root", str(home / "x"), "--pidfile", str(home / "pid"), "--host", env["DOCKER_HOST"]],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(home / "dockerd.log", "wb"),
        start_new_session=True)
    try:
        for _ in range(240):
            if subprocess.run(["docker", "info"], env=env, capture_output=True).returncode == 0:
                break
            assert daemon.poll() is None, (home / "dockerd.log").read_text()[-2000:]
            time.sleep(0.25)
        else:
            raise AssertionError(f"the test's own dockerd did not answer:\n"
                                 f"{(home / 'dockerd.log').read_text()[-2000:]}")
        saved = subprocess.Popen(["docker", "save", base_image], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "load"], stdin=saved.stdout, env=env, capture_output=True, text=True)
        saved.stdout.close()
        assert saved.wait() == 0 and loaded.returncode == 0, loaded.stderr
        yield env
    finally:
        daemon.terminate()  # it stops its containers and its containerd with it
        try:
            daemon.wait(timeout=120)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        # A killed daemon leaves its data root mounted (seen once): rmtree cannot remove a mount point.
        subprocess.run(["sh", "-c", f"grep -o ' {home}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.engine
@pytest.mark.registry
def test_fresh_runner_takes_the_lower_layers_from_the_registry_cache(engine, copy_fixture, unique_repo):
    """Build and push: the cache goes next to the image, every split layer in it;
    a runner without the image or any local cache (an engine of the test's own)
    then builds a new lock from it, its lower layers cached."""
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write(HEAVY)
    repository = f"{engine.registry}/{unique_repo}"
    env = engine.env(RAYBAKE_REPOSITORY=repository)
    first = raybake("build", "--push", "-C", str(root), env=env)
    output = first.stderr + first.stdout
    # Exported after the image was verified and pushed, never during its build.
    assert output.index("verifying the environment") < output.index("exporting the build cache to")
    assert "exporting cache to registry" in output
    cache_ref = f"{repository}:buildcache-default"
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    image_layers = [layer["digest"] for layer in manifest(reference)["layers"]]
    cache = manifest(cache_ref)  # an image index whose entries are the cached layers
    cache_layers = {entry["digest"] for entry in cache.get("layers", cache.get("manifests", []))}
    assert set(image_layers) <= cache_layers  # mode=max: the six layer and every other step's
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text.replace('dependencies = ["six==1.17.0"]',
                                                      'dependencies = ["six==1.17.0", "tabulate==0.9.0"]'))
    subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, check=True)
    with engine_of_its_own(engine.base_image) as fresh:
        second = raybake("build", "-C", str(root), env={**env, "DOCKER_HOST": fresh["DOCKER_HOST"]})
    output = second.stderr + second.stdout
    assert " built " in second.stdout
    headers = steps(output)
    six = [h for h in headers.values() if "RUN" in h and "heavy-six" in h]
    top = [h for h in headers.values() if "RUN" in h and "uv sync" in h]
    assert six and not any(h.endswith(" RAN") for h in six), headers
    assert top and all(h.endswith(" RAN") for h in top), headers  # the new lock's step did run
    assert f"importing cache manifest from {cache_ref}" in output


@pytest.mark.engine
@pytest.mark.registry
def test_a_rejected_push_leaves_nothing_in_the_registry(engine, copy_fixture, unique_repo):
    """README: a build that verification rejects is never tagged and nothing is
    pushed, the build cache (REPOSITORY:buildcache-SPEC) included."""
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text('env:\n  RAY_ENABLE_UV_RUN_RUNTIME_ENV: "1"\n')
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}")
    proc = raybake("build", "--push", "-C", str(root), env=env, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "RAY_ENABLE_UV_RUN_RUNTIME_ENV" in proc.stdout + proc.stderr
    assert registry_tags(engine.registry, unique_repo) == []
    assert unique_repo not in registry_repositories(engine.registry)


@pytest.mark.engine
@pytest.mark.registry
def test_cache_from_and_cache_to_on_the_command_line_replace_the_default(engine, copy_fixture, unique_repo,
                                                                          tmp_path):
    """`build --cache-from X --cache-to Y`: BuildKit imports X instead of
    REPOSITORY:buildcache-SPEC, and Y is written once the image is verified."""
    root = copy_fixture("small")
    repository = f"{engine.registry}/{unique_repo}"
    env = engine.env(RAYBAKE_REPOSITORY=repository)
    cache_from = f"{repository}:buildcache-from-the-command-line"
    exported = tmp_path / "exported-cache"
    proc = raybake("build", "--progress", "plain", "--cache-from", cache_from,
                   "--cache-to", f"type=local,dest={exported}", "-C", str(root), env=env)
    output = proc.stderr + proc.stdout
    assert " built " in proc.stdout
    assert f"importing cache manifest from {cache_from}" in output
    assert f"{repository}:buildcache-default" not in output  # replaced, not added to
    assert output.index("verifying the environment") < output.index(
        f"exporting the build cache to type=local,dest={exported}")
    index = json.loads((exported / "index.json").read_text())
    assert index["manifests"], index


@contextmanager
def stalled_registry():
    """A server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.parametrize("cache", ["stalled", "refused"])
def test_a_failed_cache_export_is_bounded_by_the_push_timeout_and_keeps_the_image(
        engine, copy_fixture, unique_repo, cache):
    """The export runs after the push, bounded by RAYBAKE_PUSH_TIMEOUT (not the
    build's hour); when it stalls or fails the verified, pushed image stands."""
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_REPOSITORY=f"{engine.registry}/{unique_repo}", RAYBAKE_PUSH_TIMEOUT="8")
    with stalled_registry() as stalled:
        where = stalled if cache == "stalled" else "127.0.0.1:1"
        proc = raybake("build", "--push", "--cache-to", f"{where}/raybake-test/cache:x", "-C", str(root),
                       env=env)
    assert "built and pushed" in proc.stdout
    warning = proc.stderr[proc.stderr.index("warning: exporting the build cache"):]
    assert f"{where}/raybake-test/cache:x" in warning and "the image is built and verified" in warning
    if cache == "stalled":
        assert "did not finish within 8 s" in warning and "RAYBAKE_PUSH_TIMEOUT" in warning
    else:
        assert "failed" in warning
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    # The image, its verification record (raybake.trust) and its referrers' fallback
    # tag (raybake.attest), both named sha256-HEX...; no cache.
    tags = registry_tags(engine.registry, unique_repo)
    assert [t for t in tags if not t.startswith("sha256-")] == [reference.rsplit(":", 1)[1]]
    assert len(tags) == 3


@pytest.mark.engine
@pytest.mark.registry
def test_zstd_image_builds_verifies_and_reaches_the_registry_as_zstd(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write('\n[tool.raybake]\ncompression = "zstd"\n')
    repository = f"{engine.registry}/{unique_repo}"
    env = engine.env(RAYBAKE_REPOSITORY=repository)
    raybake("build", "--push", "-C", str(root), env=env, timeout=900)
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    raybake("verify", reference, "-C", str(root), env=env, timeout=600)
    types = {layer["mediaType"] for layer in manifest(reference)["layers"]}
    assert types == {"application/vnd.oci.image.layer.v1.tar+zstd"}, types


@pytest.mark.engine
@pytest.mark.registry
def test_compression_level_reaches_the_layers_raybake_builds(engine, copy_fixture, unique_repo):
    # Level 0 stores: a layer's gzip blob is as large as its tar (at the default
    # level six's layer is a third of it). A layer already compressed in the
    # builder keeps its blob, so a unique ENV above the dependency layers makes
    # BuildKit build them anew.
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write(f'\n[tool.raybake]\ncompression_level = 0\nenv = {{ FRESH = "{unique_repo}" }}\n')
    repository = f"{engine.registry}/{unique_repo}"
    env = engine.env(RAYBAKE_REPOSITORY=repository)
    raybake("build", "--push", "-C", str(root), env=env, timeout=900)
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    ratios = []
    for layer in manifest(reference)["layers"]:
        status, blob = registry_blob(engine.registry, unique_repo, layer["digest"])
        assert status == 200 and "gzip" in layer["mediaType"], layer
        tar = gzip.decompress(blob)
        if len(tar) > 50_000:
            ratios.append(len(blob) / len(tar))
    assert max(ratios) >= 1, f"every layer was compressed (ratios {ratios}): the level was not applied"
