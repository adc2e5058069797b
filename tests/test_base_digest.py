"""Base image digests: once `raybake pin --update-bases` has recorded them, the
tags hash them and builds start from exactly that digest, so a base tag that
moves changes nothing until the next --update-bases, which changes the tag.
Nothing but --update-bases asks the engine."""

from __future__ import annotations

import json
import os

import pytest
from helpers import docker, new_repository, raybake, remove_repository

from raybake.pin import PIN_FILE

OFFLINE = {"DOCKER_HOST": "unix:///nonexistent", "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9"}
LABEL = "dev.raybake.test.base-variant"


def variant(engine, tmp_path, reference: str, n: int) -> str:
    """The test base image with one label more, under ``reference``: another
    digest, the same layers. Returns its digest (the containerd store's ID)."""
    context = tmp_path / f"variant-{n}"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(f"FROM {engine.base_image}\nLABEL {LABEL}={n}\n")
    docker("buildx", "build", "--quiet", "--network", "host", "-t", reference, str(context))
    return docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def tag(root, env) -> str:
    return raybake("tag", "-C", str(root), env=env).stdout.strip()


def pin_file(root) -> dict:
    return json.loads((root / PIN_FILE).read_text())


@pytest.mark.engine
@pytest.mark.registry
def test_a_recorded_base_holds_until_update_bases(copy_fixture, engine, tmp_path, unique_repo):
    base = f"{engine.registry}/{new_repository('moving')}:1"
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_BASE_IMAGE=base, RAYBAKE_REPOSITORY=unique_repo)
    built = []
    try:
        first = variant(engine, tmp_path, base, 1)
        docker("push", "--quiet", base)
        by_name = tag(root, env)  # nothing recorded: the base is hashed by name
        proc = raybake("pin", "--update-bases", "-C", str(root), env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"base {base}: (not pinned) -> {first}" in proc.stderr
        assert pin_file(root)["bases"] == {base: first}
        pinned = pin_file(root)["images"]["default"]
        assert pinned != by_name
        # The pin answers from here on: no daemon, no network.
        assert tag(root, {**env, **OFFLINE}) == pinned
        for args in (("pin", "--check"), ("pin",)):
            assert raybake(*args, "-C", str(root), env={**env, **OFFLINE}, check=False).returncode == 0

        second = variant(engine, tmp_path, base, 2)  # the base's tag moves, here and in the registry
        docker("push", "--quiet", base)
        assert second != first and tag(root, env) == pinned
        # A build starts from the recorded digest (pulled from the registry by digest) and says the tag moved.
        proc = raybake("build", "-C", str(root), env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        built.append(pinned)
        assert f"from {base}@{first}" in proc.stderr
        assert "raybake-pin.json records" in proc.stderr and "--update-bases" in proc.stderr
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", pinned).stdout)
        assert labels[LABEL] == "1"

        proc = raybake("pin", "--update-bases", "-C", str(root), env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"base {base}: {first} -> {second}" in proc.stderr
        assert pin_file(root)["bases"] == {base: second}
        assert pin_file(root)["images"]["default"] not in (pinned, by_name)
        assert tag(root, {**env, **OFFLINE}) == pin_file(root)["images"]["default"]
    finally:
        for reference in (base, f"{base}@{first}", *built):
            docker("image", "rm", "--force", reference, check=False)
        remove_repository(base.rsplit(":", 1)[0], engine.registry)


@pytest.mark.engine
def test_a_recorded_base_that_is_gone_is_an_error_with_the_fix(copy_fixture, engine, tmp_path, unique_repo):
    base = f"{new_repository('moving')}:1"  # in no registry
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_BASE_IMAGE=base, RAYBAKE_REPOSITORY=unique_repo)
    try:
        variant(engine, tmp_path, base, 1)
        raybake("pin", "--update-bases", "-C", str(root), env=env)
        variant(engine, tmp_path, base, 2)  # the recorded image is now untagged
        proc = raybake("build", "-C", str(root), env=env, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "is not in the local image store" in proc.stderr and "raybake pin --update-bases" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        docker("image", "rm", "--force", base, check=False)


@pytest.mark.engine
@pytest.mark.registry
def test_update_bases_asks_the_registry_for_a_base_not_here_without_pulling(copy_fixture, engine, tmp_path):
    base = f"{engine.registry}/{new_repository('moving')}:1"
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_BASE_IMAGE=base)
    try:
        digest = variant(engine, tmp_path, base, 1)
        docker("push", "--quiet", base)
        docker("image", "rm", base)
        proc = raybake("pin", "--update-bases", "-C", str(root), env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        assert pin_file(root)["bases"] == {base: digest}
        assert docker("image", "inspect", base, check=False).returncode != 0  # not pulled
    finally:
        docker("image", "rm", "--force", base, check=False)
        remove_repository(base.rsplit(":", 1)[0], engine.registry)


def test_the_pin_keeps_recorded_bases_offline_and_drops_unused_ones(copy_fixture):
    root = copy_fixture("small")
    env = {**os.environ, "RAYBAKE_BASE_IMAGE": "example.invalid/base:1", **OFFLINE}
    by_name = tag(root, env)
    recorded = "sha256:" + "c" * 64
    # A version-1 pin had no bases: read, then rewritten in the current format.
    (root / PIN_FILE).write_text(json.dumps({"version": 1, "images": {"default": by_name}}))
    assert raybake("pin", "-C", str(root), env=env, check=False).returncode == 0
    assert pin_file(root) == {"version": 2, "images": {"default": by_name}, "bases": {}}

    pin = pin_file(root)
    pin["bases"] = {"example.invalid/base:1": recorded, "gone/base:1": "sha256:" + "d" * 64}
    (root / PIN_FILE).write_text(json.dumps(pin))
    proc = raybake("pin", "-C", str(root), env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "base gone/base:1: sha256:" in proc.stderr and "(removed: no spec has it any more)" in proc.stderr
    assert pin_file(root)["bases"] == {"example.invalid/base:1": recorded}
    assert pin_file(root)["images"]["default"] == tag(root, env) != by_name


def test_a_base_named_by_digest_is_hashed_and_built_from_by_that_digest_offline(copy_fixture):
    """README, Base image digests (1.): `base_image: NAME@sha256:...` needs nothing
    resolved: the tag hashes that digest, FROM takes it, and `pin --update-bases`
    has nothing to record for it, all with no daemon and no network."""
    from raybake.planner import identities_for
    from raybake.project import load_project

    root = copy_fixture("small")
    by_digest = {c: f"example.invalid/base:1@sha256:{c * 64}" for c in "cd"}
    tags = {}
    for c, base in by_digest.items():
        env = {**os.environ, "RAYBAKE_BASE_IMAGE": base, **OFFLINE}
        tags[c] = tag(root, env)
        (identity,) = identities_for(load_project(root), environ=env)
        assert identity.base_digest == f"sha256:{c * 64}" and identity.base_reference == base
    assert tags["c"] != tags["d"]  # another digest under the same name is another image
    env = {**os.environ, "RAYBAKE_BASE_IMAGE": by_digest["c"], **OFFLINE}
    proc = raybake("pin", "--update-bases", "-C", str(root), env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert pin_file(root)["bases"] == {} and pin_file(root)["images"]["default"] == tags["c"]


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.parametrize("where", ["absent", "unreachable"])
def test_update_bases_with_a_base_it_cannot_resolve_is_an_error_and_the_pin_stays(copy_fixture, engine, where):
    """No digest to record (not here, and its registry has no such tag or does not
    answer): an error naming the base and the fix, never a pin without it."""
    from test_errors import assert_clean_error

    base = (f"{engine.registry}/{new_repository('absent')}:1" if where == "absent"
            else f"127.0.0.1:1/{new_repository('absent')}:1")  # nothing listens on port 1
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_BASE_IMAGE=base)
    raybake("pin", "-C", str(root), env=env)
    before = (root / PIN_FILE).read_bytes()
    proc = raybake("pin", "--update-bases", "-C", str(root), env=env, check=False)
    needle = ("is neither in the local image store nor in its registry" if where == "absent"
              else "cannot resolve the base image")
    assert_clean_error(proc, base, needle, f"docker pull {base}", "RAYBAKE_BASE_IMAGE")
    assert (root / PIN_FILE).read_bytes() == before
