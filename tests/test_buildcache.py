"""Where a build's BuildKit cache comes from and goes to (raybake.buildcache)."""

import json
import re
import subprocess
import uuid

import pytest
from helpers import docker, raybake

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
    assert default_cache_ref(spec("team/app")) is None  # no registry: no shared cache


def test_default_imports_always_and_exports_only_with_push():
    ref = "127.0.0.1:5000/team/app:buildcache-cpu"
    assert cache_options(spec(), push=False).cache_from == (f"type=registry,ref={ref}",)
    assert cache_options(spec(), push=False).cache_to == ()
    assert cache_options(spec(), push=True).cache_to == (f"type=registry,ref={ref},ignore-error=true,mode=max",)
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


@pytest.mark.parametrize("value", ["type=nonsense,ref=x", "type="])
def test_unknown_cache_types_are_refused_with_the_forms_that_work(value):
    with pytest.raises(SpecError) as err:
        normalize(value, export=False)
    assert "type=registry,ref=" in err.value.fix


# --------------------------------------------------------------------------- on the real engine and registry

HEAVY = '\n[tool.raybake]\nheavy_packages = ["six"]\n'


def steps(output: str) -> dict[str, str]:
    """BuildKit's plain progress: step number -> its header line, with "CACHED" appended when it was."""
    headers = dict(re.findall(r"^(#\d+) (\[.*)$", output, re.MULTILINE))
    for number in re.findall(r"^(#\d+) CACHED$", output, re.MULTILINE):
        if number in headers:
            headers[number] += " CACHED"
    return headers


@pytest.mark.engine
def test_fresh_runner_takes_the_lower_layers_from_the_registry_cache(engine, copy_fixture):
    """Build and push (the cache goes next to the image), forget everything local,
    add a dependency: the pinned lower layer comes from the registry's cache."""
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write(HEAVY)
    repository = f"{engine.registry}/raybake-test/cache{uuid.uuid4().hex[:10]}"
    env = engine.env(RAYBAKE_REPOSITORY=repository)
    first = raybake("build", "--push", "-C", str(root), env=env, timeout=900)
    assert "exporting cache to registry" in first.stderr + first.stdout
    cache_ref = f"{repository}:buildcache-default"
    assert docker("buildx", "imagetools", "inspect", cache_ref).returncode == 0
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    # A fresh runner: neither the image nor any build cache here.
    docker("image", "rm", reference)
    docker("buildx", "prune", "-af")
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text.replace('dependencies = ["six==1.17.0"]',
                                                      'dependencies = ["six==1.17.0", "tabulate==0.9.0"]'))
    subprocess.run([str(uv_bin()), "lock", "-q"], cwd=root, check=True)
    second = raybake("build", "-C", str(root), env=env, timeout=900)
    output = second.stderr + second.stdout
    assert f"importing cache manifest from {cache_ref}" in output
    headers = steps(output)
    six = [h for h in headers.values() if "RUN" in h and "six" in h and "tabulate" not in h]
    assert six and all(h.endswith(" CACHED") for h in six), headers
    # The top layer (uv sync of the new lock) is built, not taken from the cache.
    assert any("RUN" in h and not h.endswith(" CACHED") for h in headers.values()), headers


@pytest.mark.engine
def test_zstd_image_builds_verifies_and_reaches_the_registry_as_zstd(engine, copy_fixture):
    root = copy_fixture("small")
    with (root / "pyproject.toml").open("a") as f:
        f.write('\n[tool.raybake]\ncompression = "zstd"\n')
    repository = f"{engine.registry}/raybake-test/zstd{uuid.uuid4().hex[:10]}"
    env = engine.env(RAYBAKE_REPOSITORY=repository)
    raybake("build", "--push", "-C", str(root), env=env, timeout=900)
    reference = raybake("tag", "-C", str(root), env=env).stdout.strip()
    raybake("verify", reference, "-C", str(root), env=env, timeout=600)
    manifest = json.loads(docker("buildx", "imagetools", "inspect", "--raw", reference).stdout)
    types = {layer["mediaType"] for layer in manifest["layers"]}
    assert types == {"application/vnd.oci.image.layer.v1.tar+zstd"}, types
    docker("image", "rm", reference)
