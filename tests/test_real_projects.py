"""Real public uv projects (tests/fixtures/real, see its README.md) built as a new
user would: `raybake build` must succeed, which includes verification, and the
project's own code must then run from the staged source against the image, in a
Ray job for the Ray apps. One build per fixture.

Two fixtures pin a Python the offline base image (3.11.2) cannot give; raybake
must say so before building anything. One of them (>=3.12) builds on the
offline trixie base (3.13)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FIXTURES
from helpers import docker, job_runtime_env, raybake
from raybake.jobs import entrypoint_command

REAL = FIXTURES / "real"


@dataclass(frozen=True)
class RealProject:
    fixture: str  # directory under tests/fixtures/real
    project: str  # the uv project inside it, relative (what -C points at)
    marker: str  # printed by raybake_smoke.py only when the project's code ran

    @property
    def id(self) -> str:
        return self.fixture


# levanter (258 packages, 1.6 GB installed) is not built here: its build, verification
# and job took two minutes of the suite's ten. Its selection is checked below without
# the engine; tried by hand: `raybake submit -C tests/fixtures/real/levanter -- python raybake_smoke.py`.
RAY_APPS = [
    RealProject("lance-ray", ".", "raybake-smoke lance_ray 0.0.1 rows=3"),
]
PLAIN = [
    RealProject("postmodern-mono", ".", "raybake-smoke postmodern ok"),
    RealProject("jasperhg90-uv-monorepo", ".", "raybake-smoke jasperhg90 ok two=2"),
]
# A path source inside the tree that is not a member (lib = { path = "lib-fork" }).
PATH_SOURCE = RealProject("vytharion-path-source", ".", "raybake-smoke vytharion ok")


def _copy(real: RealProject, tmp_path: Path) -> Path:
    dest = tmp_path / real.fixture
    shutil.copytree(REAL / real.fixture, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    return dest / real.project


def _build(project: Path, env: dict[str, str]) -> str:
    raybake("build", "-C", str(project), env=env, timeout=900)
    return raybake("tag", "-C", str(project), env=env).stdout.strip()


def test_levanter_selection_is_the_runtime_not_its_default_groups_or_conflicting_extras():
    """levanter's `default-groups = ["test", "docs", "dev"]` are a developer's, and its
    extras `gpu`/`tpu` conflict: the default spec installs none of them, only the
    runtime (jaxlib's 105 MB wheel and Ray among it)."""
    from raybake.planner import spec_requirements, specs_for
    from raybake.project import load_project

    project = load_project(REAL / "levanter")
    (spec,) = specs_for(project)
    locked = {line.split("==")[0] for line in spec_requirements(project, spec).splitlines()
              if "==" in line and not line.startswith(" ")}
    assert {"jaxlib", "jax", "ray", "tensorstore", "wandb", "gitpython"} <= locked
    assert not locked & {"pytest", "mkdocs", "pre-commit", "libtpu", "jax-cuda12-plugin", "torch"}, locked


@pytest.mark.engine
@pytest.mark.ray
@pytest.mark.parametrize("real", RAY_APPS, ids=lambda r: r.id)
def test_ray_app_builds_and_its_job_runs_the_project_code(real, engine, tmp_path, unique_repo):
    project = _copy(real, tmp_path)
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    env.pop("RAY_ADDRESS", None)
    _build(project, env)
    proc = raybake("submit", "-C", str(project), "--", "python", "raybake_smoke.py", env=env, timeout=900)
    assert real.marker in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.engine
@pytest.mark.parametrize("real", [*PLAIN, PATH_SOURCE], ids=lambda r: r.id)
def test_project_builds_and_its_code_runs_from_the_staged_source(real, engine, tmp_path, unique_repo):
    """The job config's working_dir and PYTHONPATH, applied to the built image,
    run the project's entry script: members' code from source, their
    dependencies from the image."""
    project = _copy(real, tmp_path)
    env = engine.env(RAYBAKE_REPOSITORY=unique_repo)
    if real is PATH_SOURCE:  # requires-python >=3.12: the trixie base (3.13)
        env["RAYBAKE_BASE_IMAGE"] = engine.trixie_base_image
    ref = _build(project, env)
    # These images hold no Ray, so job-config refuses them: the runtime_env its
    # formats carry comes from the library.
    staged = tmp_path / "staged"
    env_vars = job_runtime_env(project, env, staged).get("env_vars", {})
    run = docker("run", "--rm", "--network", "none", "-v", f"{staged}:/job:ro", "-w", "/job",
                 *[arg for key, value in env_vars.items() for arg in ("-e", f"{key}={value}")],
                 ref, "sh", "-c", entrypoint_command(["python", "raybake_smoke.py"]), check=False)
    assert run.returncode == 0 and real.marker in run.stdout, (
        f"env_vars={env_vars}\n{run.stdout}\n{run.stderr}")


@pytest.mark.engine
@pytest.mark.parametrize(("fixture", "wanted"), [
    ("tekumara-ray-demo", "3.11.11"),  # requires-python ==3.11.11 and .python-version 3.11.11
    ("vytharion-path-source", "3.12"),  # requires-python >=3.12
])
def test_python_the_base_image_lacks_is_an_error_before_building(fixture, wanted, engine, tmp_path, unique_repo):
    project = _copy(RealProject(fixture, ".", ""), tmp_path)
    proc = raybake("build", "-C", str(project), env=engine.env(RAYBAKE_REPOSITORY=unique_repo), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    # Names the interpreter it wanted and the one the base image has, and
    # neither blames the lock nor the host's interpreters.
    assert wanted in proc.stderr and "3.11.2" in proc.stderr, out
    assert "out of date" not in out and "uv python install" not in out and "Traceback" not in out
    assert "#1 " not in out
    images = docker("images", "--quiet", unique_repo).stdout.strip()
    assert images == ""
