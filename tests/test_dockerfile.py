"""Golden Dockerfiles. Regenerate with RAYBAKE_UPDATE_GOLDEN=1 after a deliberate change
(what render() emits is part of every tag through dockerfile.template_digest)."""

import os
import re
from pathlib import Path

import pytest
from conftest import EXAMPLE
from helpers import BASE_DIGEST

from raybake.dockerfile import render
from raybake.lockfile import parse_lock
from raybake.plan import identify, plan_build
from raybake.planner import spec_requirements
from raybake.project import load_project
from raybake.spec import load_specs, select

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "small-default": ("small", None),
    "small-full": ("small", "extras: [table]\ndev: true\napt_packages: [git, curl]\n"
                            "env:\n  OMP_NUM_THREADS: \"1\"\nindex_secrets: [UV_INDEX_CORP_PASSWORD]\n"),
    "workspace": ("workspace", None),
    "example-layered": (EXAMPLE, None),
    # raybake's base-image presets (images/), with what the planner finds in each base.
    "preset-python-slim": ("small", "base: python-slim\n"),
    "preset-ray": (EXAMPLE, "base: ray\n", {"python": "3.11.11", "user": "ray", "workdir": "/home/ray"}),
    "preset-anyscale": (EXAMPLE, "base: anyscale\n", {"python": "3.11.11", "user": "ray", "workdir": "/home/ray"}),
    "preset-cuda": ("small", "base: cuda\n", {"python": "3.12"}),
}


def recipe(project, spec, python="3.11.2", user="root", base_digest=None, workdir="/"):
    """The plan as built, with the base image's Python and user given (no daemon)."""
    identity = identify(project, spec, base_digest=base_digest, template_digest="0" * 64)
    return plan_build(project, identity,
                      requirements=spec_requirements(project, spec), lock=parse_lock(project.lock_bytes),
                      python=python, user=user, workdir=workdir)


@pytest.mark.parametrize("case", CASES)
def test_golden_dockerfile(copy_fixture, case):
    fixture, spec_yaml, base = (*CASES[case], {})[:3]
    root = copy_fixture(fixture)
    if spec_yaml:
        (root / "images").mkdir(exist_ok=True)
        (root / "images/default.yaml").write_text(spec_yaml)
    project = load_project(root)
    (spec,) = select(load_specs(project, {"SSL_CERT_FILE": ""}), ())  # the example has a py313 spec too
    text = render(recipe(project, spec, **base))
    # The hash label varies with the host platform; the golden keeps its shape.
    text = re.sub(r'(input-hash=)"[0-9a-f]{64}"', r'\1"<hash>"', text)
    text = re.sub(r'(dev\.raybake\.version=)"[^"]+"', r'\1"<version>"', text)
    golden = GOLDEN / f"{case}.Dockerfile"
    if os.environ.get("RAYBAKE_UPDATE_GOLDEN"):
        if os.environ.get("CI"):
            pytest.fail("RAYBAKE_UPDATE_GOLDEN rewrites the golden files: refused under CI", pytrace=False)
        changed = not golden.exists() or golden.read_text() != text
        golden.write_text(text)
        assert not changed, (f"rewrote {golden}: review the diff (git diff {golden}), commit it if deliberate, "
                             "and run again without RAYBAKE_UPDATE_GOLDEN")
    assert text == golden.read_text()


@pytest.mark.parametrize("fixture", ["small", "workspace"])
def test_dependencies_never_install_the_project(copy_fixture, fixture):
    project = load_project(copy_fixture(fixture))
    (spec,) = load_specs(project, {})
    text = render(recipe(project, spec))
    assert "uv sync --frozen --no-install-project" in text
    assert "COPY . " not in text and "ADD " not in text
    assert ("--no-install-workspace" in text) == (fixture == "workspace")
    if fixture == "workspace":
        # Members' pyproject.toml files are bound in, never their source.
        assert "source=libs/liba/pyproject.toml" in text and "libs/liba/src" not in text


def test_printed_dockerfile_names_the_resolved_base_and_python(copy_fixture):
    project = load_project(copy_fixture("small"))
    (spec,) = load_specs(project, {"RAYBAKE_BASE_IMAGE": "example/base:1"})
    assert 'ARG BASE_IMAGE="example/base:1"\n' in render(recipe(project, spec, python="3.12.4"))
    # A digest the pin records (or the name carries): FROM takes it.
    text = render(recipe(project, spec, python="3.12.4", base_digest=BASE_DIGEST))
    assert f'ARG BASE_IMAGE="example/base:1@{BASE_DIGEST}"\n' in text and 'ARG PYTHON_VERSION="3.12"\n' in text


def test_layers_go_from_stable_to_volatile(copy_fixture):
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text("apt_packages: [git]\nenv:\n  A: b\nruntime_apt_packages: [ffmpeg]\n")
    project = load_project(root)
    (spec,) = load_specs(project, {})
    text = render(recipe(project, spec))
    # Runtime apt packages above the dependencies: changing them rebuilds that layer alone.
    order = [text.index(s) for s in ("FROM ${BASE_IMAGE}", "--no-install-recommends git", 'ENV A="b"', "uv sync",
                                     "--no-install-recommends ffmpeg", "LABEL ")]
    assert order == sorted(order)


def test_git_is_added_only_when_the_specs_selection_has_a_git_source(copy_fixture):
    """Decided per spec from its own export: a git source in a group the spec
    does not select neither adds git nor turns off the split layers."""
    project = load_project(copy_fixture("small"))
    (spec,) = load_specs(project, {"RAYBAKE_BASE_IMAGE": "b:1"})
    identity = identify(project, spec, base_digest=BASE_DIGEST, template_digest="0" * 64)
    plain = spec_requirements(project, spec)
    with_git = plain + "gitdep @ git+https://example.com/org/gitdep@0123456789abcdef\n"
    lock = parse_lock(project.lock_bytes)
    without = plan_build(project, identity, requirements=plain, lock=lock, python="3.11.2")
    needing = plan_build(project, identity, requirements=with_git, lock=lock, python="3.11.2")
    assert "git" not in without.apt_packages and "git" in needing.apt_packages
    assert without.dep_layers == needing.dep_layers  # the git source goes to the final uv sync
    assert "apt-get install -y --no-install-recommends git" in render(needing)


def test_env_values_are_written_for_buildkit_to_read_back_as_is(copy_fixture):
    # In double quotes BuildKit expands $VAR and unescapes \" \$ \\ only; JSON's
    # \n or \u00e9 would stay literal. tests/test_secrets.py checks a real image.
    from raybake.dockerfile import env_value

    assert env_value("${PATH}:$HOME") == '"\\${PATH}:\\$HOME"'
    assert env_value('a\\b"c') == '"a\\\\b\\"c"'
    assert env_value("café\tx") == '"café\tx"'
    root = copy_fixture("small")
    (root / "images").mkdir()
    (root / "images/default.yaml").write_text("env:\n  X: '${PATH}:$HOME'\n")
    project = load_project(root)
    (spec,) = load_specs(project, {})
    assert 'ENV X="\\${PATH}:\\$HOME"\n' in render(recipe(project, spec))


def test_the_seal_script_is_part_of_every_tag(monkeypatch):
    """The script that seals each dependency layer decides the image: a change
    to it changes the template digest, and so every tag."""
    from raybake import contract, dockerfile

    before = dockerfile.template_digest.__wrapped__()
    source = contract.in_image_source
    monkeypatch.setattr(contract, "in_image_source",
                        lambda name: source(name) + ("\n# changed\n" if name == contract.SEAL_SCRIPT else ""))
    assert dockerfile.template_digest.__wrapped__() != before
