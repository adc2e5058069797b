"""Base images people use: non-root bases (rayproject/ray runs as `ray`)."""

import json
import shutil
import uuid

import pytest
from conftest import EXAMPLE
from helpers import docker, raybake
from test_dockerfile import recipe

from raybake.dockerfile import render
from raybake.project import load_project
from raybake.spec import load_specs


def test_the_base_images_user_is_restored_at_the_end(copy_fixture):
    project = load_project(copy_fixture("small"))
    (spec,) = load_specs(project, {})
    assert "\nUSER root\n" in render(recipe(project, spec))  # raybake's own steps
    text = render(recipe(project, spec, user="ray"))
    assert text.index("\nUSER root\n") < text.index("uv sync") < text.index("\nUSER ray\n")
    assert "\nUSER ray\n" not in render(recipe(project, spec, user="root"))


@pytest.mark.engine
def test_a_non_root_base_builds_verifies_and_runs_as_its_user(engine, copy_fixture, unique_repo):
    root = copy_fixture("small")
    env = engine.env(RAYBAKE_BASE_IMAGE=engine.nonroot_base_image, RAYBAKE_REPOSITORY=unique_repo)
    ref = raybake("build", "-C", str(root), env=env).stdout.split()[0]  # verified as `ray`
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", ref).stdout)
    assert config["User"] == "ray"
    out = docker("run", "--rm", "--network", "none", ref, "sh", "-c",
                 "id -un; python -c 'import six, sys; print(sys.prefix)'; touch /opt/venv/x 2>&1 || echo read-only")
    assert out.stdout.split() [:2] == ["ray", "/opt/venv"] and "read-only" in out.stdout


@pytest.mark.engine
def test_a_platform_the_engine_cannot_run_is_refused_before_building(engine, copy_fixture):
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text("platform: linux/riscv64\n")
    proc = raybake("build", "-C", str(root), env=engine.env(), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "cannot build for linux/riscv64" in proc.stderr and "binfmt" in proc.stderr
    assert "building" not in proc.stderr and "Traceback" not in proc.stderr


def test_the_example_is_a_matrix_of_pythons():
    """examples/ray-app's images/: default (the lowest minor requires-python allows, 3.11)
    and py313; RAYBAKE_BASE_IMAGE_PY313 sets the second's base alone."""
    from raybake.planner import specs_for
    from raybake.project import load_project

    specs = {s.name: s for s in specs_for(load_project(EXAMPLE), all_specs=True,
                                          environ={"RAYBAKE_BASE_IMAGE_PY313": "trixie:x"})}
    assert set(specs) == {"default", "py313"}
    assert specs["py313"].python == "3.13" and specs["py313"].base_image == "trixie:x"
    assert specs["default"].python is None and specs["default"].base_image != "trixie:x"


@pytest.mark.engine
def test_a_matrix_of_pythons_is_built_side_by_side(engine, copy_fixture, unique_repo):
    """The example's matrix (its images/ on a small project): default on Python 3.11
    (bookworm) and py313 on 3.13 (trixie, through RAYBAKE_BASE_IMAGE_PY313), built by
    one `build --all`, each verified, each tagged."""
    root = copy_fixture("small")
    shutil.copytree(EXAMPLE / "images", root / "images")
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo, RAYBAKE_BASE_IMAGE_PY313=engine.trixie_base_image)
    proc = raybake("build", "--all", "-C", str(root), env=env, timeout=1200)
    refs = {line.split()[0].rsplit(":", 1)[1].rsplit("-", 1)[0]: line.split()[0]
            for line in proc.stdout.splitlines() if " built " in line}
    assert set(refs) == {"default", "py313"}, proc.stdout
    for spec in ("default", "py313"):  # progress lines name their spec
        assert f"raybake: [{spec}] verifying the environment of {refs[spec]}" in proc.stderr
    for spec, want in (("default", "3.11"), ("py313", "3.13")):
        version = docker("run", "--rm", "--network", "none", refs[spec], "python", "-c",
                         "import platform, six; print(platform.python_version())").stdout
        assert version.startswith(want), (spec, version)


@pytest.mark.engine
def test_base_facts_find_the_base_working_directory(engine, tmp_path):
    """An image on a non-root base ends in the base's own working directory (Anyscale's /home/ray)."""
    from raybake.planner import base_facts

    reference = f"raybake-test-workdir:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(f"FROM {engine.nonroot_base_image}\nWORKDIR /home/ray\n")
    docker("buildx", "build", "--load", "-t", reference, str(tmp_path))
    try:
        facts = base_facts(reference)
    finally:
        docker("image", "rm", reference, check=False)
    assert (facts.user, facts.workdir) == ("ray", "/home/ray")
