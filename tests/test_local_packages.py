"""The project's own packages: workspace members (virtual or dependency-free
roots, flat and src layouts) and in-tree path sources. Their dependencies go
into the image, their code only through working_dir."""

import json
import shutil
import uuid

import pytest
from conftest import FIXTURES
from helpers import docker, job_runtime_env, raybake
from test_errors import assert_clean_error, dead_daemon_env

from raybake.errors import ProjectError, SpecError
from raybake.plan import uv_selection_args, uv_sync_args
from raybake.planner import spec_requirements
from raybake.project import load_project
from raybake.spec import load_specs
from raybake.stage import stage_project
from raybake.verify import locked_selection


def selection(root, spec_yaml=None):
    if spec_yaml:
        (root / "images").mkdir()
        (root / "images/default.yaml").write_text(spec_yaml)
    project = load_project(root)
    (spec,) = load_specs(project, {})
    return project, spec


def test_a_virtual_root_installs_every_members_dependencies(copy_fixture):
    project, spec = selection(copy_fixture("ws-virtual"))
    assert project.virtual and [m.name for m in project.members] == ["app", "greeter"]
    assert "--all-packages" in uv_selection_args(project, spec)
    assert set(locked_selection(spec_requirements(project, spec), None)) == {"six", "tabulate"}


def test_a_dependency_free_root_installs_every_members_dependencies(copy_fixture):
    root = copy_fixture("ws-virtual")
    (root / "pyproject.toml").write_text('[project]\nname = "wsroot"\nversion = "0"\nrequires-python = ">=3.11"\n'
                                         + (root / "pyproject.toml").read_text())
    project = load_project(root)
    assert not project.virtual and not project.root_has_dependencies
    (spec,) = load_specs(project, {})
    assert "--all-packages" in uv_selection_args(project, spec)


def test_package_selects_one_member(copy_fixture):
    project, spec = selection(copy_fixture("ws-virtual"), "package: greeter\n")
    assert uv_selection_args(project, spec)[:2] == ("--package", "greeter")
    assert set(locked_selection(spec_requirements(project, spec), None)) == {"six"}


def test_package_must_be_a_member(copy_fixture):
    with pytest.raises(SpecError, match="package 'nope' is not a member") as info:
        selection(copy_fixture("ws-virtual"), "package: nope\n")
    assert "app, greeter" in info.value.fix


def test_a_path_source_is_bound_and_not_installed(copy_fixture):
    project, spec = selection(copy_fixture("pathsrc"))
    assert [(p.path, p.name, p.member) for p in project.path_packages] == [("schemas", "schemas", False)]
    assert uv_sync_args(project, spec)[:4] == ("--frozen", "--no-install-project", "--no-install-package", "schemas")
    # Its dependency (six) is in the selection; the package itself is not.
    assert set(locked_selection(spec_requirements(project, spec), None)) == {"six", "tabulate"}


def test_a_path_source_outside_the_project_is_refused(copy_fixture, tmp_path):
    root = copy_fixture("pathsrc")
    shutil.move(root / "schemas", tmp_path / "schemas")
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text().replace(
        'path = "schemas"', f'path = "{tmp_path / "schemas"}"'))
    with pytest.raises(ProjectError, match="points outside the project") as info:
        load_project(root)
    assert "working_dir" in info.value.fix


def test_a_real_projects_path_source_outside_it_is_refused_before_building(tmp_path):
    """thromer/uv-monorepo-example: app-new depends on `lib-new = { path = "../lib-new" }`,
    outside the directory that ships as working_dir. Refused before the engine is
    asked for anything: here there is none."""
    real = tmp_path / "thromer-uv-monorepo-example"
    shutil.copytree(FIXTURES / "real" / real.name, real, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    proc = raybake("build", "-C", str(real / "app-new"), env=dead_daemon_env(tmp_path), check=False)
    assert_clean_error(proc, "../lib-new", "points outside the project")
    assert "Docker daemon" not in proc.stderr


@pytest.mark.parametrize(("fixture", "roots"), [
    ("ws-virtual", ("packages/app/src", "packages/greeter")),  # src layout, flat layout
    ("pathsrc", ("src", "schemas")),
    ("workspace", ("src", "libs/liba/src", "libs/libb/src")),
    ("small", ("src",)),
    # The root's src/ holds members (src/core), not packages: it is no import root.
    ("real/jasperhg90-uv-monorepo", ("shared/utils/src", "src/core/src")),
    ("real/postmodern-mono", ("apps/mycli", "apps/server", "libs/greeter")),  # one namespace package, flat
])
def test_python_roots_are_where_the_packages_are(copy_fixture, fixture, roots):
    assert load_project(copy_fixture(fixture)).python_roots() == roots


@pytest.mark.parametrize(("fixture", "roots"), [
    ("backends/uv-build", ("lib",)),
    ("backends/poetry", ("lib",)),
    ("backends/pdm", ("source",)),
    ("backends/maturin", ("python",)),
    ("backends/flit", ("src",)),
    ("backends/hatch-sources", ("code",)),
    ("backends/hatch-packages", ("lib",)),
    ("backends/setuptools-package-map", ("modules",)),
])
def test_each_build_backends_setting_names_the_root(copy_fixture, fixture, roots):
    """The code sits where only the backend's own setting says (see tests/fixtures/backends)."""
    assert load_project(copy_fixture(fixture)).python_roots() == roots


@pytest.mark.parametrize(("spec_yaml", "roots"), [
    ("package: greeter\n", ("packages/greeter",)),  # greeter depends on no local package
    ("package: app\n", ("packages/app/src", "packages/greeter")),  # app depends on greeter
    (None, ("packages/app/src", "packages/greeter")),  # a virtual root: every member
])
def test_only_the_roots_of_what_the_spec_selects_are_on_pythonpath(copy_fixture, tmp_path, spec_yaml, roots):
    project, spec = selection(copy_fixture("ws-virtual"), spec_yaml)
    assert stage_project(project, tmp_path / "out", spec).python_path == roots


def test_build_backend_settings_name_the_roots(copy_fixture):
    root = copy_fixture("ws-virtual")
    member = root / "packages/greeter/pyproject.toml"
    member.write_text(member.read_text() + '\n[tool.setuptools.packages.find]\nwhere = ["lib"]\n')
    assert load_project(root).python_roots() == ("packages/app/src", "packages/greeter/lib")


# ---- real images -----------------------------------------------------------

@pytest.fixture(scope="module")
def built(engine, tmp_path_factory, repositories):
    """One build per fixture; the image, its project copy and the env. The images
    go with the session's repositories (forced: a `docker run --rm` container may
    still hold its image for a moment after the run)."""
    out = {}
    for name in ("ws-virtual", "pathsrc", "backends/uv-build"):
        root = tmp_path_factory.mktemp("local") / name
        shutil.copytree(FIXTURES / name, root)
        env = engine.env(RAYBAKE_REPOSITORY=repositories("l"))
        ref = raybake("build", "-C", str(root), env=env).stdout.split()[0]  # verification runs inside build
        out[name] = (root, ref, env)
    return out


def installed(ref: str) -> set[str]:
    out = docker("run", "--rm", "--network", "none", ref, "uv", "pip", "list", "--format", "json").stdout
    return {d["name"] for d in json.loads(out)}


@pytest.mark.engine
@pytest.mark.parametrize("name", ["ws-virtual", "pathsrc"])
def test_dependencies_are_installed_and_own_packages_ship_as_source(built, name, tmp_path):
    root, ref, env = built[name]
    packages = installed(ref)
    assert {"six", "tabulate"} <= packages
    assert not packages & {"app", "greeter", "schemas", "pathsrc", "ws-virtual"}
    run = run_main_from_job_config(root, ref, env, tmp_path)
    assert ("hello ray" if name == "ws-virtual" else "schema") in run.stdout


def run_main_from_job_config(root, ref, env, tmp_path):
    """main.py of the staged source in the image, with the job config's working_dir and PYTHONPATH."""
    runtime_env = job_runtime_env(root, env, tmp_path / "stage")
    staged, env_vars = runtime_env["working_dir"], runtime_env["env_vars"]
    assert env_vars["PYTHONPATH"]
    return docker("run", "--rm", "--network", "none", "-v", f"{staged}:/work:ro", "-w", "/work",
                  "-e", f"PYTHONPATH={env_vars['PYTHONPATH']}", ref, "python", "main.py", check=False)


@pytest.mark.engine
def test_a_uv_build_projects_job_imports_its_code_from_the_module_root(built, tmp_path):
    """uv's own build backend with `module-root = "lib"`: PYTHONPATH is lib, so the
    job's `import uvb_app` does not fail with ModuleNotFoundError."""
    root, ref, env = built["backends/uv-build"]
    run = run_main_from_job_config(root, ref, env, tmp_path)
    assert "ModuleNotFoundError" not in run.stderr
    assert run.returncode == 0 and "uvb_app imports from working_dir, six 1.17.0" in run.stdout


@pytest.mark.engine
def test_a_member_selection_is_verified_against_exactly_that_selection(built):
    """An image with only greeter's dependencies fails verification against the
    all-members selection: a missing member dependency is never 'OK'."""
    root, ref, env = built["ws-virtual"]
    proc = raybake("verify", ref, "-C", str(root), env=env)
    assert "OK" in proc.stdout
    broken = f"raybake-test/dropped:d{uuid.uuid4().hex[:8]}"
    context = root.parent / "dropped"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {ref}\nUSER root\nRUN uv pip uninstall tabulate\n")
    docker("buildx", "build", "--network", "none", "--tag", broken, str(context))
    try:
        proc = raybake("verify", broken, "-C", str(root), env=env, check=False)
        assert proc.returncode == 1 and "tabulate==0.9.0 is in the lock but not installed" in proc.stdout
    finally:
        docker("image", "rm", broken, check=False)
