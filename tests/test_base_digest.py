"""The base image's digest is hashed: a base tag that moves makes another image
tag, and raybake-pin.json holds the base still until `raybake pin --update-bases`."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from helpers import docker, raybake

from raybake.pin import PIN_FILE

OFFLINE = {"DOCKER_HOST": "unix:///nonexistent"}
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


@pytest.mark.engine
def test_a_moved_base_tag_changes_the_image_tag(copy_fixture, engine, tmp_path):
    base = f"raybake-test/moving-{uuid.uuid4().hex[:8]}:1"
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_BASE_IMAGE=base)
    try:
        variant(engine, tmp_path, base, 1)
        first = tag(root, env)
        assert tag(root, env) == first
        variant(engine, tmp_path, base, 2)
        assert tag(root, env) != first
    finally:
        docker("image", "rm", "--force", base, check=False)


@pytest.mark.engine
@pytest.mark.registry
def test_the_pin_holds_the_base_until_update_bases(copy_fixture, engine, tmp_path):
    base = f"{engine.registry}/raybake-test/moving-{uuid.uuid4().hex[:8]}:1"
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_BASE_IMAGE=base, RAYBAKE_REPOSITORY=f"raybake-test/t{uuid.uuid4().hex[:12]}")
    built = None
    try:
        first = variant(engine, tmp_path, base, 1)
        docker("push", "--quiet", base)
        docker("image", "rm", base)  # only the registry has it: resolved there, without pulling
        proc = raybake("pin", "-C", str(root), env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        pin = json.loads((root / PIN_FILE).read_text())
        assert pin["bases"] == {base: first}
        pinned = pin["images"]["default"]
        # From here on the pin answers: no daemon.
        assert tag(root, {**env, **OFFLINE}) == pinned
        assert raybake("pin", "--check", "-C", str(root), env={**env, **OFFLINE}, check=False).returncode == 0

        second = variant(engine, tmp_path, base, 2)  # the tag moves, here and in the registry
        docker("push", "--quiet", base)
        assert second != first and tag(root, env) == pinned

        # A build starts from the recorded digest, and says the tag has moved.
        proc = raybake("build", "-C", str(root), env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        built = pinned
        assert "raybake-pin.json records" in proc.stderr and "--update-bases" in proc.stderr
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", pinned).stdout)
        assert labels[LABEL] == "1"

        docker("image", "rm", base)
        proc = raybake("pin", "--update-bases", "-C", str(root), env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"base {base}: {first} -> {second}" in proc.stderr
        pin = json.loads((root / PIN_FILE).read_text())
        assert pin["bases"] == {base: second} and pin["images"]["default"] != pinned
        assert tag(root, {**env, **OFFLINE}) == pin["images"]["default"]
    finally:
        docker("image", "rm", "--force", base, check=False)
        if built:
            docker("image", "rm", "--force", built, check=False)


def test_a_pin_without_the_base_is_stale_offline_and_tag_needs_the_engine(copy_fixture):
    root = copy_fixture("small")
    env = {**os.environ, "RAYBAKE_BASE_IMAGE": "example.invalid/base:1", **OFFLINE}
    (root / PIN_FILE).write_text(json.dumps({"version": 1, "images": {"default": "small:default-0"}}))
    proc = raybake("pin", "--check", "-C", str(root), env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "records no digest for the base image example.invalid/base:1" in proc.stderr
    assert "fix: run `raybake pin`" in proc.stderr
    proc = raybake("tag", "-C", str(root), env=env, check=False)
    assert proc.returncode == 2 and "Docker daemon is not reachable" in proc.stderr
